"""The official MCP conformance suite against `fluxroute serve --http`, through scripts/conformance-check.sh: the
scenarios fluxroute must pass pass, the rest fail only as the baseline says, and a failure outside the baseline fails
the script. Needs npm and the npm registry (Node 22 and the suite install into .ci-node/, once; later runs take about
5 s). Without them the test is skipped, except under CI=true, where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.needs import missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "conformance-check.sh"
BASELINE = ROOT / "scripts" / "conformance-baseline.yml"
CANNOT_RUN = 2  # the script's status when the suite could not be installed or run
REQUIRED = ["server-initialize", "ping", "tools-list", "resources-list", "prompts-list", "completion-complete"]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("npm") is None:
        missing("npm is not installed; the MCP conformance suite needs it")
    done = subprocess.run(
        ["bash", str(SCRIPT), sys.executable],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode == CANNOT_RUN:
        missing(done.stderr.strip().splitlines()[0] if done.stderr.strip() else "the conformance suite could not run")
    return done


def test_the_required_scenarios_pass_and_the_rest_fail_only_as_the_baseline_says() -> None:
    done = run_check()

    assert done.returncode == 0, done.stdout + done.stderr
    for scenario in [*REQUIRED, "dns-rebinding-protection"]:
        assert f"  pass  {scenario}\n" in done.stdout, done.stdout
    assert "Baseline check passed" in done.stdout
    assert "conformance check passed" in done.stdout


def test_a_failure_outside_the_baseline_fails_the_check(tmp_path: Path) -> None:
    lines = BASELINE.read_text(encoding="utf-8").splitlines(keepends=True)
    dropped = "".join(line for line in lines if not line.lstrip().startswith("- tools-call-image"))
    assert dropped != "".join(lines)
    baseline = tmp_path / "baseline.yml"
    baseline.write_text(dropped, encoding="utf-8")

    done = run_check(CONFORMANCE_BASELINE=str(baseline))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  tools-call-image" in done.stdout
    assert "conformance: FAILED" in done.stderr


def test_the_baseline_may_not_excuse_a_required_scenario(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.yml"
    baseline.write_text("server:\n  - completion-complete  # no\n", encoding="utf-8")

    done = subprocess.run(
        ["bash", str(SCRIPT), sys.executable],
        cwd=ROOT,
        env=os.environ | {"CONFORMANCE_BASELINE": str(baseline)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert "lists completion-complete, which fluxroute must pass" in done.stderr
