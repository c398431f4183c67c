"""FLUX.1 [dev] on one GPU: diffusers' eager bf16 baseline against fluxroute's configured pipeline, side by side.

Run:  python benchmarks/local_gpu.py [--runs 3] [--fp8] [--attention-backend _flash_3] [--out local_gpu.json]
      python benchmarks/local_gpu.py --smoke      # tiny config on the CPU in seconds (the test suite runs this)

The transformer is full size (FLUX.1 [dev] config: 19 double + 38 single blocks, hidden 3072) with random
weights built directly on the GPU in bf16: matmuls, attention, compilation and fp8 time the same as with the
real weights. The VAE is full size too; the text encoders are replaced by random prompt embeddings of the
T5-XXL / CLIP-L shapes (their cost, ~20 ms per call, is left out on every side alike). Each variant gets a
fresh pipeline from the same seed; the configured one goes through `configure_pipeline`, the function the
local provider applies to the pipelines it loads.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from fluxroute.providers.local_pipeline import PipelineOptions, configure_pipeline

# FLUX.1 [dev] / FLUX.1 Krea [dev] transformer (black-forest-labs/FLUX.1-dev transformer/config.json)
FLUX_DEV_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
TINY_TRANSFORMER: dict[str, Any] = {
    **FLUX_DEV_TRANSFORMER,
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}
TINY_VAE: dict[str, Any] = {
    **FLUX_VAE,
    "block_out_channels": (8, 8, 8, 8),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 32,
}
TEXT_TOKENS = 512  # T5 max_sequence_length the pipeline uses by default
H200_BF16_TFLOPS = 790.0  # measured dense bf16 matmul rate of an H200 (see the README's Local inference notes)
TARGET_BF16_S = 3.5
EAGER, CONFIGURED, CONFIGURED_FP8 = "diffusers eager", "fluxroute configured", "fluxroute configured + fp8"
TARGET_SPEEDUP = 1.9


def flop_per_step(config: dict[str, Any], width: int, height: int, text_tokens: int = TEXT_TOKENS) -> float:
    """Transformer FLOP for one denoising step: every block's linears (12 d² per token with the 4x MLP, in
    double and single blocks alike) plus joint attention (QK and AV, 2 N² d), times two for multiply-add."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    tokens = (width // 16) * (height // 16) + text_tokens
    blocks = config["num_layers"] + config["num_single_layers"]
    linear = blocks * tokens * 12 * hidden**2
    attention = blocks * 2 * tokens**2 * hidden
    return 2.0 * (linear + attention)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_pipeline(transformer_config: dict[str, Any], vae_config: dict[str, Any], device: str, dtype: Any) -> Any:
    """Random weights made where they will run, in their final dtype (no full-precision copy on the way)."""
    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        transformer = FluxTransformer2DModel(**transformer_config)
        vae = AutoencoderKL(**vae_config)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class Variant:
    name: str
    seconds: list[float] = field(default_factory=list)
    build_s: float = 0.0
    configure_s: float = 0.0
    first_call_s: float = 0.0
    peak_gib: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cold_start_s(self) -> float:
        """Pipeline ready and first image out: build (stands in for loading) + configure + first call."""
        return self.build_s + self.configure_s + self.first_call_s


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = "cpu" if args.smoke else "cuda"
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.transformer_config = TINY_TRANSFORMER if args.smoke else FLUX_DEV_TRANSFORMER
        self.vae_config = TINY_VAE if args.smoke else FLUX_VAE

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def call(self, pipe: Any) -> float:
        config, size = self.transformer_config, self.args.size
        generator = torch.Generator(device="cpu").manual_seed(0)
        embeds = torch.randn(1, TEXT_TOKENS, config["joint_attention_dim"], generator=generator)
        pooled = torch.randn(1, config["pooled_projection_dim"], generator=generator)
        self.sync()
        started = time.perf_counter()
        with torch.inference_mode():
            pipe(
                prompt_embeds=embeds.to(self.device, self.dtype),
                pooled_prompt_embeds=pooled.to(self.device, self.dtype),
                width=size,
                height=size,
                num_inference_steps=self.args.steps,
                guidance_scale=3.5,
                generator=generator,
                output_type="pil",
            )
        self.sync()
        return time.perf_counter() - started

    def run(self, name: str, options: PipelineOptions | None) -> Variant:
        variant = Variant(name)
        if self.device == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        pipe = build_pipeline(self.transformer_config, self.vae_config, self.device, self.dtype)
        self.sync()
        variant.build_s = time.perf_counter() - started
        if options is not None:
            started = time.perf_counter()
            variant.notes = configure_pipeline(pipe, options, device=self.device, plan="gpu")
            variant.configure_s = time.perf_counter() - started
        variant.first_call_s = self.call(pipe)  # compiles when compiling: part of the cold start
        variant.seconds = [self.call(pipe) for _ in range(self.args.runs)]
        if self.device == "cuda":
            variant.peak_gib = torch.cuda.max_memory_allocated() / 1024**3
        del pipe
        torch._dynamo.reset()  # compiled graphs hold the modules: drop them before the next variant is built
        return variant


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cpu_count": __import__("os").cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def report(args: argparse.Namespace, bench: Bench, variants: list[Variant]) -> dict[str, object]:
    steps, size = args.steps, args.size
    flop = flop_per_step(bench.transformer_config, size, size)
    floor_s = flop * steps / (args.peak_tflops * 1e12)
    eager = variants[0].median_s
    rows = []
    for v in variants:
        rows.append(
            {
                "variant": v.name,
                "median_s": round(v.median_s, 4),
                "runs_s": [round(s, 4) for s in v.seconds],
                "speedup_vs_eager": round(eager / v.median_s, 3),
                "transformer_floor_fraction": round(floor_s / v.median_s, 3),
                "peak_gib": None if v.peak_gib is None else round(v.peak_gib, 2),
                "cold_start_s": round(v.cold_start_s, 2),
                "build_s": round(v.build_s, 2),
                "configure_s": round(v.configure_s, 2),
                "first_call_s": round(v.first_call_s, 2),
                "applied": v.notes,
            }
        )
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "smoke": args.smoke,
        "size": f"{size}x{size}",
        "steps": steps,
        "flop_per_step": flop,
        "peak_tflops_assumed": args.peak_tflops,
        "floor_s": float(f"{floor_s:.4g}"),
        "variants": rows,
    }
    if not args.smoke:
        configured = next(r for r in rows if r["variant"] == CONFIGURED)
        fp8 = next((r for r in rows if r["variant"] == CONFIGURED_FP8), None)
        result["targets"] = {
            f"bf16 <= {TARGET_BF16_S} s": configured["median_s"] <= TARGET_BF16_S,  # type: ignore[operator]
            f"bf16 >= {TARGET_SPEEDUP}x eager": configured["speedup_vs_eager"] >= TARGET_SPEEDUP,  # type: ignore[operator]
            "fp8 below the bf16 floor": None if fp8 is None else fp8["median_s"] < floor_s,  # type: ignore[operator]
        }
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"FLUX.1 [dev] transformer {'(tiny smoke config) ' if result['smoke'] else ''}{result['size']}, "
        f"{result['steps']} steps, {'float32 on the CPU' if result['smoke'] else 'bf16'}; "
        f"transformer floor {result['floor_s']:.3g} s "
        f"({result['flop_per_step']:.3g} FLOP/step at {result['peak_tflops_assumed']:g} TFLOP/s)",
        "",
        "| variant | s/image (median) | runs | x eager | floor/actual | peak GiB | cold start s | applied |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in result["variants"]:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        runs = ", ".join(f"{s:.3f}" for s in r["runs_s"])
        lines.append(
            f"| {r['variant']} | {r['median_s']:.3f} | {runs} | {r['speedup_vs_eager']:.2f} | "
            f"{r['transformer_floor_fraction']:.2f} | {peak} | {r['cold_start_s']:.2f} | "
            f"{'; '.join(r['applied']) or 'diffusers defaults'} |"
        )
    for target, met in (result.get("targets") or {}).items():
        lines.append(f"- target {target}: {'n/a' if met is None else 'met' if met else 'NOT met'}")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config on the CPU (checks the script, not speed)")
    parser.add_argument("--size", type=int, help="square side in pixels (default 1024; smoke 64)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 28; smoke 2)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant after the first (median)")
    parser.add_argument("--no-compile", action="store_true", help="configured path without torch.compile")
    parser.add_argument("--attention-backend", help="diffusers attention backend, e.g. _flash_3, _native_cudnn")
    parser.add_argument("--fp8", action="store_true", help="add a variant with fp8 linears (needs torchao)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS, help="bf16 rate for the floor")
    parser.add_argument("--out", type=Path, default=Path("local_gpu.json"), help="where the JSON goes")
    args = parser.parse_args(argv)
    args.size = args.size or (64 if args.smoke else 1024)
    args.steps = args.steps or (2 if args.smoke else 28)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA GPU here: `--smoke` runs the CPU path; the figures need a GPU", file=sys.stderr)
        return 2
    bench = Bench(args)
    configured = PipelineOptions(
        compile=not args.no_compile and not args.smoke, attention_backend=args.attention_backend
    )
    variants = [bench.run(EAGER, None), bench.run(CONFIGURED, configured)]
    if args.fp8:
        variants.append(bench.run(CONFIGURED_FP8, PipelineOptions(**{**asdict(configured), "fp8": True})))
    result = report(args, bench, variants)
    print(table(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
