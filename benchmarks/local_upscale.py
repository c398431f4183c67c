"""Local upscaling: tiled (the memory plan's CPU tile) against one whole-image pass, side by side, on a real-size
photo-like image, with random-weight models of the real architectures (tests/fakes/tiny_esrgan.py: an ESRGAN of 8
filters and 1 block, and a Real-ESRGAN Compact). Each measurement runs in a fresh process (peak resident memory is
per process), pairs alternate tiled/whole, and the outputs are compared pixel by pixel.

    .venv/bin/python benchmarks/local_upscale.py [--size 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _status(key: str) -> int:
    text = Path("/proc/self/status").read_text(encoding="ascii")
    match = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.MULTILINE)
    assert match is not None
    return int(match[1]) * 1024


def measure(weights: str, source: str, edge: int, out: str) -> dict[str, float]:
    """One upscale in this process: seconds and the rise of peak resident memory over the loaded model."""
    from PIL import Image

    from fluxroute.providers.local_upscale import load_upscaler, upscale

    loaded = load_upscaler(Path(weights), "cpu")
    image = Image.open(source).convert("RGB")
    image.load()
    size = (image.width * loaded.scale, image.height * loaded.scale)
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    before = _status("VmRSS")
    started = time.perf_counter()
    result = upscale(loaded, image, size, edge, lambda index, total: False)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") - before
    assert result is not None
    result.save(out)
    return {"seconds": seconds, "peak_mb": peak / 2**20}


def photo_like(path: Path, size: int) -> None:
    """A gradient with seeded noise: detail in every tile, as a photo has."""
    from PIL import Image

    rng = random.Random(7)
    noise = Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    gradient = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    Image.blend(noise, gradient, 0.6).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="input side in pixels (x4 output)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        weights, source, edge, out = args.child
        print(json.dumps(measure(weights, source, int(edge), out)))
        return

    from PIL import Image, ImageChops

    from fluxroute.providers.local_weights import CPU_UPSCALE_TILE
    from tests.fakes.tiny_esrgan import build_tiny_compact, build_tiny_esrgan

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "in.png"
        photo_like(source, args.size)
        models = {
            "ESRGAN 8f/1b": build_tiny_esrgan(work / "esrgan.safetensors"),
            "Compact 8f": build_tiny_compact(work / "compact.safetensors"),
        }
        print(f"input {args.size}x{args.size} -> x4; CPU tile {CPU_UPSCALE_TILE} px; {args.runs} pair(s) per model")
        print("| model | path | seconds (median) | peak RSS rise MB (median) | seconds ratio | memory ratio |")
        print("|---|---|---:|---:|---:|---:|")
        for name, weights in models.items():
            figures: dict[str, list[dict[str, float]]] = {"tiled": [], "whole": []}
            for _ in range(args.runs):
                for path, edge in (("tiled", CPU_UPSCALE_TILE), ("whole", 1_000_000)):
                    out = work / f"{path}.png"
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", str(weights), str(source), str(edge), str(out)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    figures[path].append(json.loads(done.stdout.strip().splitlines()[-1]))
            with Image.open(work / "tiled.png") as tiled, Image.open(work / "whole.png") as whole:
                bands = ImageChops.difference(tiled.convert("RGB"), whole.convert("RGB")).getextrema()
                differs = max(high for _, high in bands)
            medians = {
                path: (
                    statistics.median(f["seconds"] for f in runs),
                    statistics.median(f["peak_mb"] for f in runs),
                )
                for path, runs in figures.items()
            }
            (ts, tm), (ws, wm) = medians["tiled"], medians["whole"]
            print(f"| {name} | tiled | {ts:.2f} | {tm:.0f} | {ts / ws:.2f} | {tm / wm:.2f} |")
            print(f"| {name} | whole | {ws:.2f} | {wm:.0f} | 1 | 1 |")
            print(f"  {name}: largest pixel difference, tiled vs whole: {differs} of 255")


if __name__ == "__main__":
    main()
