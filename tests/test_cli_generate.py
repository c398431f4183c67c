"""`fluxroute generate` as a person runs it, against the provider fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxroute.cli import main
from fluxroute.settings import Settings
from tests.fakes.krea import KreaFake


@pytest.fixture
def env(hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("KREA_API_TOKEN", krea_fake.token)
    monkeypatch.setenv("FLUXROUTE_KREA_BASE_URL", krea_fake.base_url)
    monkeypatch.delenv("FAL_KEY", raising=False)
    return tmp_path


def test_generate_prints_paths_provider_cost_and_seed(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = env / "renders"
    code = main(["generate", "a lighthouse at dusk", "--model", "flux-dev", "--seed", "5", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "krea flux-dev (krea-flux-1-dev): $0.007, seed 5" in out
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
