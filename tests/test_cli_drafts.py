"""`fluxroute draft`, `fluxroute finalize` and the draft sets in `fluxroute jobs`, against the provider fakes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.cli import main
from fluxroute.settings import Settings
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


@pytest.fixture
def env(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    monkeypatch.setenv("KREA_API_TOKEN", krea_fake.token)
    monkeypatch.setenv("FLUXROUTE_KREA_BASE_URL", krea_fake.base_url)
    monkeypatch.setenv("FAL_KEY", fal_fake.key)
    monkeypatch.setenv("FLUXROUTE_FAL_BASE_URL", fal_fake.base_url)
    return tmp_path


def test_draft_prints_each_draft_the_sheet_and_the_total_then_finalize_and_jobs(
    env: Path, fal_fake: FalFake, krea_fake: KreaFake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["draft", "a lighthouse at dusk", "-n", "3", "--seed", "20"]) == 0
    out = capsys.readouterr().out
    assert "3 drafts on fal flux/schnell" in out
    assert "  2. seed 21  $0.003  " in out
    assert "contact sheet: " in out and "total: $0.009" in out
    draft_set_id = out.split()[2].rstrip(":")

    assert main(["finalize", draft_set_id, "2", "--json"]) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["method"] == "image_conditioned" and final["draft_number"] == 2
    assert Path(final["result"]["images"][0]["path"]).is_file()
    assert fal_fake.billed + krea_fake.billed == Decimal("0.009") + Decimal(str(final["result"]["cost_usd"]))

    assert main(["jobs"]) == 0
    listed = capsys.readouterr().out
    assert "draft sets" in listed and f"{draft_set_id}  " in listed and "3 drafts  $0.009" in listed


def test_draft_dry_run_reports_both_costs_and_spends_nothing(
    env: Path, fal_fake: FalFake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["draft", "a lighthouse at dusk", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert (planned["drafts_cost_usd"], planned["final_cost_usd"]) == ("0.012", "0.007")
    assert planned["summary"].startswith("4 drafts for $0.012") and fal_fake.billed == 0


def test_a_dry_run_without_keys_shows_the_round_that_would_run_once_they_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    for name in ("KREA_API_TOKEN", "FAL_KEY", "FLUXROUTE_LOCAL_MODEL", "FLUXROUTE_LOCAL_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))

    assert main(["draft", "a lighthouse at dusk", "-n", "4", "--dry-run", "--provider", "fal"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 drafts for $0.012 on fal flux/schnell [not available: FAL_KEY is not set")
    assert "the final for $0.025 on fal flux/krea/image-to-image [not available: FAL_KEY" in out
    assert not (tmp_path / "home").exists()  # planning spends nothing and writes nothing
