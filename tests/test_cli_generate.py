"""`fluxroute generate` as a person runs it, against the provider fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxroute.cli import main
from fluxroute.settings import Settings
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


@pytest.fixture
def env(hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    monkeypatch.setenv("KREA_API_TOKEN", krea_fake.token)
    monkeypatch.setenv("FLUXROUTE_KREA_BASE_URL", krea_fake.base_url)
    monkeypatch.delenv("FAL_KEY", raising=False)
    return tmp_path


def test_generate_prints_paths_provider_cost_and_seed(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = env / "renders"
    code = main(["generate", "a lighthouse at dusk", "--model", "flux-dev", "--seed", "5", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "krea flux-1-dev (flux-dev): $0.007, seed 5" in out
    assert str(out_dir.resolve()) in out
    assert err == "", "no progress line when stderr is not a terminal"
    assert len(list(out_dir.glob("*.png"))) == 1


def test_generate_json_and_then_jobs_and_spend(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "a cat", "--model", "flux-dev", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["provider"] == "krea" and Path(result["images"][0]["path"]).is_file()
    assert main(["jobs"]) == 0
    assert result["job_id"] in capsys.readouterr().out
    assert main(["spend", "--json"]) == 0
    spend = json.loads(capsys.readouterr().out)
    assert spend["spent_total"] == "0.007" and spend["by_provider"] == {"krea": "0.007"}


def test_generate_dry_run_is_route(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "a cat", "--model", "flux-dev", "--dry-run"]) == 0
    assert "krea flux-1-dev (flux-dev): $0.007" in capsys.readouterr().out


def test_generate_explain_prints_the_route_on_stderr_then_generates(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["generate", "a cat", "--model", "flux-dev", "--explain", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["provider"] == "krea"  # stdout is the result alone
    assert "parameters sent to" in err and "krea flux-1-dev" in err, err  # what `route --explain` says


def test_an_idempotency_key_reused_for_another_request_is_exit_code_7(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "a cat", "--model", "flux-dev", "--idempotency-key", "k1"]) == 0
    capsys.readouterr()
    code = main(["generate", "a dog", "--model", "flux-dev", "--idempotency-key", "k1"])
    out, err = capsys.readouterr()
    assert code == 7, err
    assert "idempotency" in err.lower() and "Traceback" not in out + err, err
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "| 7 |" in readme[readme.index("| exit code | meaning |") :]


@pytest.mark.parametrize("verdict", ["--unbilled", "--billed"])
def test_a_lost_fal_answer_stays_at_risk_until_settled_by_hand(
    env: Path, fal_fake: FalFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], verdict: str
) -> None:
    monkeypatch.setenv("FAL_KEY", fal_fake.key)
    monkeypatch.setenv("FLUXROUTE_FAL_BASE_URL", fal_fake.base_url)
    monkeypatch.delenv("KREA_API_TOKEN")
    fault = fal_fake.faults.drop_after_accept()  # fal accepted (and will bill) it; its answer never arrived
    assert main(["generate", "a cat", "--model", "flux-dev", "--json"]) == 5
    _out, err = capsys.readouterr()
    [job] = fal_fake.jobs
    fal_fake.complete(job.id)
    assert fault.hits == 1 and "may still be billed" in err and "jobs settle" in err
    assert main(["jobs"]) == 0
    listing = capsys.readouterr().out
    [line] = [line for line in listing.splitlines() if "at risk: fal may have accepted it" in line]
    job_id = line.split()[0]
    assert "fluxroute jobs settle JOB --billed" in line

    assert main(["jobs", "settle", job_id, verdict]) == 0
    settled = capsys.readouterr().out
    assert main(["spend", "--json"]) == 0
    spend = json.loads(capsys.readouterr().out)
    assert spend["at_risk_today"] == "0" and spend["reserved_today"] == "0"
    if verdict == "--billed":  # what fal's own records said: the ledger now matches what it billed
        assert "$0.025 charged (fal billed)" in settled and spend["spent_total"] == "0.025" == str(fal_fake.billed)
    else:
        assert "$0.025 released (fal not billed)" in settled and spend["spent_total"] == "0"
    assert main(["jobs", "settle", job_id, verdict]) != 0  # nothing left to settle
    assert "nothing at risk" in capsys.readouterr().err
