"""The fleet on real Ray: a local Ray instance (num_cpus=2) running the fleet application with two worker replicas
of the tiny random-weight FLUX pipeline on the CPU, deployed by the same `fluxroute.fleet.deploy` that
`fluxroute ray deploy` runs, and routers talking to it over its HTTP job API.

Every job's cost is checked against what the fleet itself reports: ledger = GPU-seconds the replica reported x the
offer's price, rounded up to the micro-dollar. Under CI=true a missing Ray is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from fluxroute.errors import FluxrouteError
from fluxroute.providers.base import Progress
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.tiny_flux import require_local_extra
from tests.needs import missing
from tests.replicas.harness import free_port

TOKEN = "fleet-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRICE = Decimal("0.001")  # USD per GPU-second, the user's cost of the fleet's hardware
OFFER = "ray-flux-krea-dev"
ROOT = Path(__file__).resolve().parents[2]


def require_ray() -> None:
    from fluxroute.fleet import ray_missing

    reason = ray_missing()
    if reason:
        missing(reason)


@pytest.fixture(scope="module")
def fleet_url(tiny_flux_path: Path, tiny_flux_lora: Path, tiny_krea2_path: Path) -> Iterator[str]:
    """The fleet: Ray started here with 2 CPUs, two worker replicas of one CPU each (FLUX and Krea 2 Turbo weights,
    one LoRA, me/ink, no content checker), Serve's proxy on a free port."""
    require_local_extra()
    require_ray()
    import ray
    from ray import serve

    from fluxroute.fleet import deploy

    url = deploy(
        Settings(
            local_model=tiny_flux_path,
            local_device="cpu",
            local_loras={"me/ink": tiny_flux_lora},
            local_models={"krea/Krea-2-Turbo": tiny_krea2_path},
            ray_token=TOKEN,  # type: ignore[arg-type]
        ),
        replicas=2,
        gpus_per_replica=0,
        cpus_per_replica=1,
        host="127.0.0.1",
        port=free_port(),
        route_prefix="/fluxroute",
        num_cpus=2,
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # every replica reports itself (device, weights) a moment after it starts
            report = httpx.get(f"{url}/v1/fleet", timeout=5, headers=AUTH).json()
            if len(report["replicas"]) == 2 and all(r["weights"] for r in report["replicas"]):
                break
            assert time.monotonic() < deadline, f"the fleet's replicas never reported: {report}"
            time.sleep(0.5)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def fleet_settings(url: str, home: Path) -> Settings:
    return Settings(
        home=home,
        ray_url=url,
        ray_token=TOKEN,  # type: ignore[arg-type]
        usage="non-commercial",
        prices={OFFER: PRICE},
        provider_timeout_s=120,
        retry_backoff_s=0.05,
    )


def fleet_job(url: str, job_id: str) -> dict[str, Any]:
    """The fleet's own record of a job (what it ran, where, for how many GPU-seconds)."""
    response = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10, headers=AUTH)
    response.raise_for_status()
    return dict(response.json())


def billed(url: str, provider_job_ids: list[str]) -> Decimal:
    """What the fleet's reports bill: each job's GPU-seconds at PRICE, rounded up to the micro-dollar."""
    total = Decimal(0)
    for job_id in provider_job_ids:
        seconds = fleet_job(url, job_id)["gpu_seconds"]
        assert seconds and seconds > 0, f"fleet job {job_id} reported no GPU-seconds"
        total += (PRICE * Decimal(str(seconds))).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    return total


def request(**fields: object) -> ImageRequest:
    return ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": "ray", "model": "flux-krea-dev", **fields})  # type: ignore[arg-type]


def provider_job_ids(router: Router, job_ids: list[str]) -> list[str]:
    return [str(a.provider_job_id) for job_id in job_ids for a in router.store.attempts_for(job_id)]


async def test_eight_concurrent_generations_spread_over_both_replicas_with_progress_and_exact_ledger(
    fleet_url: str, tmp_path: Path
) -> None:
    router = Router(fleet_settings(fleet_url, tmp_path))
    assert router.availability["ray:black-forest-labs/FLUX.1-Krea-dev"].ok
    steps: dict[int, list[int]] = {i: [] for i in range(8)}

    def progress_of(index: int) -> Any:
        async def progress(event: Progress) -> None:
            assert event.provider == "ray"
            if event.step is not None:
                steps[index].append(event.step)

        return progress

    try:
        results = await asyncio.gather(
            *(
                router.generate(request(width=256, height=256, steps=6, seed=100 + i), progress=progress_of(i))
                for i in range(8)
            )
        )
    finally:
        await router.aclose()
    workers = {r.worker for r in results}
    assert len(workers) == 2, f"both replicas should have run jobs, saw {workers}"
    for index, result in enumerate(results):
        assert (result.provider, result.offer_id, result.seed) == ("ray", OFFER, 100 + index)
        assert steps[index] == [1, 2, 3, 4, 5, 6], f"job {index} progress: {steps[index]}"
        image = result.images[0]
        assert image.path is not None and Image.open(image.path).size == (256, 256)
        embedded = read_parameters(Path(image.path))
        assert embedded["worker"] == result.worker and embedded["provider"] == "ray"
        assert router.store.get_job(result.job_id).status == "succeeded"
    ids = provider_job_ids(router, [r.job_id for r in results])
    assert len(ids) == 8  # one fleet job each: nothing sent twice
    for job_id, result in zip(ids, results, strict=True):
        assert result.worker is not None and fleet_job(fleet_url, job_id)["replica"] == result.worker
    expected = billed(fleet_url, ids)
    assert router.store.total_charged() == expected  # ledger = what the fleet billed
    assert sum(Decimal(str(r.cost_usd)) for r in results) == expected


async def test_cancel_stops_a_running_job_on_its_replica_and_a_queued_one_before_it_starts(
    fleet_url: str, tmp_path: Path
) -> None:
    """Both replicas busy with long jobs, a third job waits at the ingress; cancelling the third never starts it,
    cancelling a running one stops it between denoising steps. Neither is charged."""
    router = Router(fleet_settings(fleet_url, tmp_path))
    started = [asyncio.Event(), asyncio.Event()]

    def on_step(index: int) -> Any:
        async def progress(event: Progress) -> None:
            if event.step is not None and event.step >= 2:
                started[index].set()

        return progress

    long = {"width": 1024, "height": 1024, "steps": 50}
    running = [asyncio.create_task(router.generate(request(**long, seed=i), progress=on_step(i))) for i in range(2)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 120)
    queued = asyncio.create_task(router.generate(request(**long, seed=9)))
    deadline = time.monotonic() + 30
    while len(router.store.list_jobs(limit=10)) < 3 or not all(
        a.provider_job_id for j in router.store.list_jobs(limit=10) for a in router.store.attempts_for(j.id)
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    jobs = {j.id: j for j in router.store.list_jobs(limit=10)}
    queued_job = next(j for j in jobs.values() if j.request.get("seed") == 9)
    queued_fleet_id = str(router.store.attempts_for(queued_job.id)[0].provider_job_id)
    assert fleet_job(fleet_url, queued_fleet_id)["status"] == "queued"

    report = await router.cancel_job(queued_job.id)
    assert report.answer == "cancelled", report.message
    with pytest.raises(FluxrouteError):
        await queued
    record = fleet_job(fleet_url, queued_fleet_id)
    assert record["status"] == "cancelled" and record["replica"] is None  # never reached a replica

    running[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await running[0]
    first = next(j for j in router.store.list_jobs(limit=10) if j.request.get("seed") == 0)
    assert first.status == "cancelled"
    stopped_id = str(router.store.attempts_for(first.id)[0].provider_job_id)
    deadline = time.monotonic() + 30
    while (record := fleet_job(fleet_url, stopped_id))["status"] != "cancelled":
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.1)
    denoised = [e["step"] for e in record["events"] if e.get("step")]
    assert record["replica"] is not None and 2 <= max(denoised) < 50  # stopped on its replica mid-way

    finished = await running[1]
    await router.aclose()
    assert finished.worker is not None
    charged = billed(fleet_url, [str(router.store.attempts_for(finished.job_id)[0].provider_job_id)])
    assert router.store.total_charged() == charged  # only the job that finished is charged
    summary = router.store.spend_summary()
    assert summary.reserved_today == 0 and summary.by_provider == {"ray": charged}  # nothing left held


async def test_jobs_with_one_lora_go_to_the_replica_that_holds_it(fleet_url: str, tmp_path: Path) -> None:
    """Serve's multiplexing: the jobs name the weights and the LoRA (`affinity`), so once a replica holds them, the
    next ones go to it, where the LoRA stays loaded; the fleet's report shows it warm there. A replica's holding
    reaches Serve's router a moment after its first job (pushed every 0.1 s to Serve's controller, then broadcast):
    until then a job may go to any free replica, so the test lets the first job's holding arrive first."""
    router = Router(fleet_settings(fleet_url, tmp_path))
    ink = [{"ref": "me/ink", "scale": 0.8}]
    try:
        first = await router.generate(request(width=64, height=64, steps=2, seed=0, loras=ink))
        assert first.worker is not None
        deadline = time.monotonic() + 10  # each replica reports as its jobs end
        while True:
            report = httpx.get(f"{fleet_url}/v1/fleet", timeout=5, headers=AUTH).json()
            holder = next(r for r in report["replicas"] if r["replica"] in first.worker)
            if holder["warm"] == "black-forest-labs/FLUX.1-Krea-dev+me/ink" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert holder["warm"] == "black-forest-labs/FLUX.1-Krea-dev+me/ink", holder
        await asyncio.sleep(1.0)  # Serve's own news of the holding: pushed every 0.1 s, then broadcast
        results = [await router.generate(request(width=64, height=64, steps=2, seed=i, loras=ink)) for i in (1, 2, 3)]
    finally:
        await router.aclose()
    assert [r.worker for r in results] == [first.worker] * 3


def _generate_in_subprocess(url: str, home: Path, config: Path, seed: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLUXROUTE_HOME": str(home), "FLUXROUTE_CONFIG": str(config), "FLUXROUTE_RAY_URL": url}
    env["FLUXROUTE_RAY_TOKEN"] = TOKEN
    command = [sys.executable, "-m", "fluxroute", "generate", "a lighthouse", "--provider", "ray"]
    command += ["--model", "flux-krea-dev", "--width", "1024", "--height", "1024", "--steps", "30", "--seed", str(seed)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_router_killed_mid_job_resumes_its_fleet_jobs_by_id_after_restart(
    fleet_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    config = tmp_path / "fluxroute.toml"
    config.write_text(f'usage = "non-commercial"\n\n[prices]\n"{OFFER}" = {PRICE}\n', encoding="utf-8")
    settings = fleet_settings(fleet_url, home)
    processes = [_generate_in_subprocess(fleet_url, home, config, seed) for seed in (1, 2)]
    try:
        router = Router(settings)
        deadline = time.monotonic() + 120
        while True:  # both routers' jobs accepted by the fleet and running on a replica
            attempts = [a for j in router.store.list_jobs(limit=10) for a in router.store.attempts_for(j.id)]
            ids = [str(a.provider_job_id) for a in attempts if a.provider_job_id]
            if len(ids) == 2 and all(fleet_job(fleet_url, i)["status"] == "running" for i in ids):
                break
            assert time.monotonic() < deadline, "the routers' jobs never started on the fleet"
            await asyncio.sleep(0.1)
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait()
    jobs_before = httpx.get(f"{fleet_url}/v1/fleet", timeout=5, headers=AUTH).json()["jobs"]

    restarted = Router(settings)  # a new process's router: same store, nothing in memory
    try:
        outcomes = await restarted.resume_in_flight()
    finally:
        await restarted.aclose()
    assert all(isinstance(o, GenerationResult) for o in outcomes), outcomes
    results = [o for o in outcomes if isinstance(o, GenerationResult)]
    assert sorted(r.seed or 0 for r in results) == [1, 2]
    for result in results:
        assert result.worker is not None and result.images[0].path is not None
        assert Image.open(result.images[0].path).size == (1024, 1024)
    assert sorted(map(str, [a.provider_job_id for r in results for a in restarted.store.attempts_for(r.job_id)])) == (
        sorted(ids)
    )  # followed by the ids stored before the kill
    jobs_after = httpx.get(f"{fleet_url}/v1/fleet", timeout=5, headers=AUTH).json()["jobs"]
    assert sum(jobs_after.values()) == sum(jobs_before.values())  # nothing submitted again
    assert restarted.store.total_charged() == billed(fleet_url, ids)


def test_the_fleet_refuses_calls_without_its_token_and_routers_say_why(fleet_url: str, tmp_path: Path) -> None:
    for method, path in (
        ("GET", "/v1/fleet"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/ray-x"),
        ("POST", "/v1/jobs/x/cancel"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = httpx.request(method, f"{fleet_url}{path}", headers=headers, json={}, timeout=10)
            assert answer.status_code == 401, (method, path, headers, answer.text)
    settings = fleet_settings(fleet_url, tmp_path).model_copy(update={"ray_token": None})
    router = Router(settings)
    assert not router.availability["ray"].ok
    assert "refused its token (FLUXROUTE_RAY_TOKEN is unset)" in router.availability["ray"].reason
    assert TOKEN not in repr(fleet_settings(fleet_url, tmp_path))  # a secret: never shown


def test_deploy_refuses_to_listen_beyond_loopback_without_a_token(tiny_flux_path: Path) -> None:
    from fluxroute.errors import ConfigError
    from fluxroute.fleet import deploy

    require_ray()
    with pytest.raises(ConfigError, match="FLUXROUTE_RAY_TOKEN"):
        deploy(
            Settings(local_model=tiny_flux_path, local_device="cpu"),
            replicas=1,
            gpus_per_replica=0,
            cpus_per_replica=1,
            host="0.0.0.0",
            port=free_port(),
            route_prefix="/fluxroute",
        )


def test_models_shows_the_fleet_its_replicas_and_their_state(
    fleet_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluxroute.cli import main

    for name, value in {
        "FLUXROUTE_CONFIG": "none",
        "FLUXROUTE_HOME": str(tmp_path),
        "FLUXROUTE_RAY_URL": fleet_url,
        "FLUXROUTE_RAY_TOKEN": TOKEN,
        "FLUXROUTE_USAGE": "non-commercial",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"fleet at {fleet_url}: 2 replicas" in out
    replica_lines = [line for line in out.splitlines() if " done, " in line and "GPU-s; warm:" in line]
    assert len(replica_lines) == 2 and all(", cpu;" in line for line in replica_lines), replica_lines
    assert "weights: black-forest-labs/FLUX.1-Krea-dev" in out
    offer_line = next(line for line in out.splitlines() if line.strip().startswith("ray-flux-krea-dev"))
    assert "available (2 of 2 fleet replicas hold it)" in offer_line and "per GPU-second" in offer_line
    assert TOKEN not in out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["fleet"]["replicas"]) == 2 and listed["fleet"]["weights"]["black-forest-labs/FLUX.1-Krea-dev"]


def test_ray_deploy_beyond_loopback_without_a_token_exits_with_the_reason(
    fleet_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluxroute.cli import main

    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    monkeypatch.delenv("FLUXROUTE_RAY_TOKEN", raising=False)
    assert main(["ray", "deploy", "--host", "0.0.0.0", "--replicas", "2"]) == 6
    assert "set FLUXROUTE_RAY_TOKEN" in capsys.readouterr().err


async def test_a_replica_without_a_checker_refuses_krea_2_for_a_router_others_reach(
    fleet_url: str, tmp_path: Path
) -> None:
    """Krea 2's license asks for content filtering wherever end users reach the deployment. A public router whose own
    settings name a checker plans the fleet's Krea 2 offer, but the replicas, deployed without one, refuse the job:
    unbilled, with the reason. The same router unreachable by others gets its image."""
    settings = fleet_settings(fleet_url, tmp_path).model_copy(
        update={
            "usage": "commercial",
            "revenue_under_1m": True,
            "local_content_checker": "tests.fleet.test_ray_fleet:no_checker",
            "remote_reachable": True,
        }
    )
    router = Router(settings)
    krea_2 = request(model="krea-2", usage="commercial", width=512, height=512)
    try:
        with pytest.raises(FluxrouteError) as refused:
            await router.generate(krea_2)
        assert "requires content filtering wherever end users can reach the deployment" in str(refused.value)
        assert router.store.total_charged() == 0 and router.store.spend_summary().reserved_today == 0
    finally:
        await router.aclose()
    private = Router(settings.model_copy(update={"remote_reachable": False}))
    try:
        result = await private.generate(krea_2)
    finally:
        await private.aclose()
    assert result.offer_id == "ray-krea-2-turbo" and result.worker is not None
