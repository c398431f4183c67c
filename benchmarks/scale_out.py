"""Scale-out: `generate_image` through the MCP SDK's Streamable HTTP client against 1, 2 and 3 `fluxroute serve
--http` replicas on one PostgreSQL database, side by side with one process on SQLite; and the store's budget
reservation (`start_call`) under contention from several processes, on each backend.

The providers are the Krea and fal fakes (tests/fakes) in this process, every job 50 ms at the provider (Krea's four
phases 12.5 ms each; fal 10 ms in queue + 40 ms in progress), images 1/32 of their logical size; calls alternate
between Krea and fal (flux-dev), each with a new prompt and seed. Each configuration gets a fresh store, its replicas
are warmed up (one call each), then `--calls` calls run with `--concurrency` in flight, spread round-robin over the
replicas (one MCP session per replica). Reported: calls/s over the wall time, p50/p99 latency per call, and the
store's ledger against what the fakes billed (they must agree).

Reservation contention: `--procs` processes each run `--reserve-calls` `start_call`s (job + capped reservation +
attempt in one transaction, under a daily cap it never reaches) on one store at once; p50/p99 of each call.

PostgreSQL: FLUXROUTE_TEST_DATABASE_URL (a server where that user may CREATE DATABASE), else a throwaway PostgreSQL
15 started as tests/postgres.py does (Debian's postgresql-15 binaries). Without one, `--backend postgres` fails and
`--backend all` runs SQLite only, saying so; `--sqlite-replicas` also runs 2 and 3 replicas sharing one SQLite file.

    python benchmarks/scale_out.py [--calls 300] [--concurrency 32] [--replicas 1 2 3] [--procs 1 4 8]
                                   [--backend all|postgres|sqlite] [--sqlite-replicas]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fakes and the replica harness live in tests/

from tests.fakes.fal import FalFake  # noqa: E402
from tests.fakes.krea import KreaFake  # noqa: E402
from tests.replicas.harness import Fakes, Replicas, mcp_client  # noqa: E402

JOB_S = 0.05
BIG_CAP = Decimal("1000000")  # a daily cap no run reaches: every reservation checks it and passes


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[Any | None]:
    """A server to create databases on (tests/postgres.py's PostgresServer), or None when there is none."""
    try:
        import psycopg  # noqa: F401

        from tests import postgres as pg
    except ImportError as exc:
        print(f"no PostgreSQL: {exc}", file=sys.stderr)
        yield None
        return
    given = os.environ.get(pg.URL_VARIABLE)
    if given:
        yield pg.PostgresServer(given)
        return
    binaries = pg._binaries()
    as_user = pg._as_server_user()
    if binaries is None or as_user is None:
        print("no PostgreSQL: no postgresql-15 binaries (or no `postgres` user to run them as root)", file=sys.stderr)
        yield None
        return
    url, root, pg_ctl = pg._start(binaries, as_user)
    try:
        yield pg.PostgresServer(url)
    finally:
        subprocess.run(
            [str(pg_ctl), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
            timeout=60,
            **as_user,  # type: ignore[arg-type]
        )
        shutil.rmtree(root, ignore_errors=True)


# --- generate_image through replicas --------------------------------------------------------------------------------


def fast_fakes(krea: KreaFake, fal: FalFake) -> None:
    krea.reset()
    fal.reset()
    krea.image_scale = fal.image_scale = 1 / 32
    krea.timings = dict.fromkeys(krea.timings, JOB_S / 4)  # queued, scheduled, processing, sampling: 50 ms
    fal.timings = {"IN_QUEUE": 0.01, "IN_PROGRESS": JOB_S - 0.01}


async def drive(replicas: Replicas, calls: int, concurrency: int, tag: str) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []

    async def one(client: Any, i: int) -> None:
        arguments = {
            "prompt": f"a lighthouse at dusk, {tag} frame {i}",
            "model": "flux-dev",
            "provider": "krea" if i % 2 else "fal",
            "seed": i,
            "wait_s": 60,
        }
        async with gate:
            started = time.perf_counter()
            result = await client.call_tool("generate_image", arguments)
            latencies.append(time.perf_counter() - started)
        if result.is_error or (result.structured_content or {}).get("status") != "succeeded":
            errors.append(str(result.content[:1]))

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(mcp_client(r)) for r in replicas.replicas]
        # warm-up: each replica makes its router and the first connections
        await asyncio.gather(*(one(c, 10**6 + k) for k, c in enumerate(clients)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(clients[i % len(clients)], i) for i in range(calls)))
        wall = time.perf_counter() - started
    return {
        "calls": calls,
        "wall_s": wall,
        "per_s": calls / wall,
        "p50_ms": 1000 * quantile(latencies, 0.5),
        "p99_ms": 1000 * quantile(latencies, 0.99),
        "mean_ms": 1000 * statistics.fmean(latencies),
        "errors": errors,
    }


def run_replicas(
    name: str, count: int, database_url: str | None, fakes: tuple[KreaFake, FalFake], args: argparse.Namespace
) -> dict[str, Any]:
    krea, fal = fakes
    fast_fakes(krea, fal)
    with tempfile.TemporaryDirectory(prefix="fluxroute-scale-") as tmp:
        webhooks = {"self": "self", "first": 0, "none": None}[args.webhooks]
        replicas = Replicas(
            Path(tmp),
            Fakes.of(krea, fal),
            count,
            database_url,
            settings={"budget_daily_usd": BIG_CAP},
            webhook_replica=webhooks,  # type: ignore[arg-type]
        )
        with replicas:
            row = asyncio.run(drive(replicas, args.calls, args.concurrency, name))
            time.sleep(0.2)
            store = replicas.open_store()
            try:
                charged = store.total_charged()
            finally:
                store.close()
    billed = krea.billed + fal.billed
    row |= {"config": name, "replicas": count, "ledger": charged, "billed": billed}
    return row


# --- reservation contention --------------------------------------------------------------------------------------


def _reserver(target: str, calls: int, barrier: Any, out: Any) -> None:
    from fluxroute.store import AttemptStart, JobStore
    from fluxroute.store.leases import this_process

    store = JobStore.connect(target, max_connections=2) if target.startswith("postgres") else JobStore(Path(target))
    owner = this_process()
    first = AttemptStart("fal:flux-dev", "fal", "flux-dev", Decimal("0.025"))
    pid = os.getpid()
    # one untimed call first (connections, schema check)
    store.start_call({"prompt": f"warm {pid}"}, None, first, per_call_cap=None, daily_cap=BIG_CAP, owner=owner)
    barrier.wait()
    times = []
    for i in range(calls):
        request = {"prompt": f"p {pid} {i}", "seed": i}
        started = time.perf_counter()
        store.start_call(request, None, first, per_call_cap=None, daily_cap=BIG_CAP, owner=owner)
        times.append(time.perf_counter() - started)
    store.close()
    out.put(times)


def reserve_contention(target: str, procs: int, calls: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(procs)
    out = context.Queue()
    workers = [context.Process(target=_reserver, args=(target, calls, barrier, out)) for _ in range(procs)]
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    times: list[float] = []
    for _ in workers:
        times += out.get(timeout=600)
    wall = time.perf_counter() - started
    for worker in workers:
        worker.join(30)
    return {
        "procs": procs,
        "calls": len(times),
        "p50_ms": 1000 * quantile(times, 0.5),
        "p99_ms": 1000 * quantile(times, 0.99),
        "per_s": len(times) / wall,
    }


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--reserve-calls", type=int, default=200)
    parser.add_argument("--backend", choices=["all", "postgres", "sqlite"], default="all")
    parser.add_argument(
        "--webhooks",
        choices=["self", "first", "none"],
        default="self",
        help="where the fakes deliver webhooks: each replica's own URL (default), the first replica's (the others "
        "are woken over the wake bus), or nowhere (jobs are polled)",
    )
    parser.add_argument("--sqlite-replicas", action="store_true", help="also 2, 3 replicas sharing one SQLite file")
    args = parser.parse_args()

    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, CPython {platform.python_version()}; "
        f"calls {args.calls}, concurrency {args.concurrency}, jobs {JOB_S * 1000:.0f} ms, webhooks {args.webhooks}"
    )
    rows: list[dict[str, Any]] = []
    contention: list[dict[str, Any]] = []
    with KreaFake() as krea, FalFake() as fal, postgres() as server:
        if server is None and args.backend == "postgres":
            print("--backend postgres needs PostgreSQL (see the docstring)", file=sys.stderr)
            return 2
        if args.backend in ("all", "sqlite"):
            counts = args.replicas if args.sqlite_replicas or server is None else [1]
            for count in counts:
                rows.append(run_replicas(f"sqlite x{count}", count, None, (krea, fal), args))
                print_row(rows[-1])
        databases: list[str] = []
        try:
            if server is not None and args.backend in ("all", "postgres"):
                for count in args.replicas:
                    name, url = server.create_database()
                    databases.append(name)
                    rows.append(run_replicas(f"postgres x{count}", count, url, (krea, fal), args))
                    print_row(rows[-1])
            for procs in args.procs:
                if args.backend in ("all", "sqlite"):
                    with tempfile.TemporaryDirectory(prefix="fluxroute-reserve-") as tmp:
                        from fluxroute.store import JobStore

                        path = Path(tmp) / "fluxroute.db"
                        JobStore(path).close()  # the schema, made once
                        contention.append(
                            {"backend": "sqlite"} | reserve_contention(str(path), procs, args.reserve_calls)
                        )
                        print_contention(contention[-1])
                if server is not None and args.backend in ("all", "postgres"):
                    from fluxroute.store import JobStore

                    name, url = server.create_database()
                    databases.append(name)
                    JobStore.connect(url, max_connections=1).close()  # the schema, made once
                    contention.append({"backend": "postgres"} | reserve_contention(url, procs, args.reserve_calls))
                    print_contention(contention[-1])
        finally:
            for name in databases:
                with contextlib.suppress(Exception):
                    server.drop_database(name)

    print("\n| store | replicas | calls/s | p50 ms | p99 ms | mean ms | errors | ledger = billed |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        same = "yes" if row["ledger"] == row["billed"] else f"NO ({row['ledger']} vs {row['billed']})"
        print(
            f"| {row['config'].split()[0]} | {row['replicas']} | {row['per_s']:.1f} | {row['p50_ms']:.0f} | "
            f"{row['p99_ms']:.0f} | {row['mean_ms']:.0f} | {len(row['errors'])} | {same} (${row['billed']}) |"
        )
    print("\n| store | processes | start_call p50 ms | p99 ms | calls/s (all processes) |")
    print("|---|---:|---:|---:|---:|")
    for row in contention:
        print(f"| {row['backend']} | {row['procs']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['per_s']:.0f} |")
    return 1 if any(row["errors"] or row["ledger"] != row["billed"] for row in rows) else 0


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['config']}: {row['per_s']:.1f} calls/s, p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
        f"{len(row['errors'])} errors {row['errors'][:2]}, ledger ${row['ledger']} billed ${row['billed']}",
        flush=True,
    )


def print_contention(row: dict[str, Any]) -> None:
    print(
        f"start_call {row['backend']} x{row['procs']} procs: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
        f"{row['per_s']:.0f}/s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
