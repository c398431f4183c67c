"""benchmarks/local_gpu.py: its CPU smoke path runs end to end and writes the table's JSON; the floor is right."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.fakes.tiny_flux import LOCAL_EXTRA

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "local_gpu.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The script loaded as a module (as `python benchmarks/local_gpu.py` would run it, minus the process)."""
    for module in ("torch", "diffusers", "transformers"):
        pytest.importorskip(module, reason=LOCAL_EXTRA)
    spec = importlib.util.spec_from_file_location("benchmarks_local_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_the_flop_floor_of_flux_dev_at_1024_is_7_44e13_per_step(bench: ModuleType) -> None:
    flop = bench.flop_per_step(bench.FLUX_DEV_TRANSFORMER, 1024, 1024)
    assert flop == pytest.approx(7.44e13, rel=0.005)
    assert 28 * flop / (bench.H200_BF16_TFLOPS * 1e12) == pytest.approx(2.64, abs=0.01)


def test_the_smoke_run_compares_eager_and_configured_and_writes_json(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "local_gpu.json"
    assert bench.main(["--smoke", "--runs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["smoke"] is True and result["size"] == "64x64" and result["steps"] == 2
    eager, configured = result["variants"]
    assert eager["variant"] == "diffusers eager" and eager["applied"] == []
    assert configured["variant"] == "fluxroute configured" and "fused QKV projections" in configured["applied"]
    assert all(v["median_s"] > 0 and v["cold_start_s"] > 0 for v in result["variants"])
    assert "| diffusers eager |" in capsys.readouterr().out


def test_without_a_gpu_the_full_run_refuses_and_points_to_smoke(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert bench.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "--smoke" in capsys.readouterr().err
