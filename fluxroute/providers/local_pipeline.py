"""The diffusers side of local inference: load the pipeline a weights folder declares (FluxPipeline for FLUX.1
[dev] / Krea [dev] / [schnell], Krea2Pipeline for Krea 2, FluxKontextPipeline for FLUX.1 Kontext [dev]) offline,
place it by memory plan, speed it up, run it.

Edits on FluxPipeline weights run FluxImg2ImgPipeline (image-to-image) and FluxInpaintPipeline (inpaint), made
once with `from_pipe` from the loaded pipeline: the same transformer, VAE and text encoders, no second copy of
the weights. An instruction edit runs on FluxKontextPipeline weights themselves.

A job's LoRAs (files found offline by the provider, see local_weights.find_lora) are loaded into the pipeline about
to run with `load_lora_weights(path, adapter_name=...)` and weighted with `set_adapters`. They stay loaded (resident)
while the next jobs name the same files, at whatever scales, so a run of jobs with one LoRA set loads it once (a
fleet sends jobs alike to the replica that ran them last: fleet/app.py); a job with other LoRAs, or none, unloads
them first with `unload_lora_weights` and runs on the base weights. A job that fails to load its LoRAs leaves none
loaded. Since the edit pipelines share the loaded components, the adapters apply to whichever of them runs. Under
FLUXROUTE_LOCAL_COMPILE a change of LoRA set recompiles the transformer blocks. Fused QKV projections would bypass
a LoRA's to_q / to_k / to_v layers, so they are unfused while LoRAs are loaded and fused again after.

Imported only inside the local worker thread (and by benchmarks/local_gpu.py): torch takes seconds to import.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers  # type: ignore[import-not-found, unused-ignore]
import torch  # type: ignore[import-not-found, unused-ignore]
import transformers  # type: ignore[import-not-found, unused-ignore]

from fluxroute.errors import ConfigError
from fluxroute.providers.local_weights import SUPPORTED_PIPELINES, MemoryPlan, declared_pipeline, unsupported_pipeline
from fluxroute.settings import Settings

log = logging.getLogger("fluxroute.local")

# the provider reports progress itself; library bars would only clutter stderr (and a stdio server's log)
diffusers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]
transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]

# called after each denoising step with (step, total_steps); returning True stops the run
StepCallback = Callable[[int, int], bool]


@dataclass(frozen=True)
class PipelineOptions:
    """Speed settings applied after loading; the same function serves the provider and the GPU benchmark."""

    compile: bool = False
    attention_backend: str | None = None
    fuse_qkv: bool = True
    channels_last_vae: bool = True
    fp8: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        return cls(
            compile=settings.local_compile,
            attention_backend=settings.local_attention_backend,
            fp8=settings.local_fp8,
        )


@dataclass
class LoadedPipeline:
    """A warm pipeline and how it was set up (reported to callers and in logs)."""

    pipe: Any
    path: Path
    device: str
    plan: MemoryPlan
    notes: list[str] = field(default_factory=list)
    load_s: float = 0.0
    warmed: set[tuple[int, int]] = field(default_factory=set)
    # pipelines made from `pipe` with from_pipe (sharing its components), by class name
    variants: dict[str, Any] = field(default_factory=dict)
    # the pipeline whose offload hooks are on the shared components (model / sequential offload plans)
    hooked: Any = None
    # the transformer's linears are fp8 (torchao): LoRAs are refused on it
    quantized: bool = False
    # the LoRA files loaded now (resident between jobs that name the same ones), in adapter order
    loras: tuple[Path, ...] = ()
    # QKV projections were fused before the resident LoRAs were loaded: fuse them again when they go
    refuse_qkv: bool = False
    # how many LoRA files were loaded since the pipeline was (a measure of residency)
    lora_loads: int = 0


# the note configure_pipeline gives when the transformer's linears were quantized to fp8
FP8_NOTE = "fp8 linears"
# request mode -> the diffusers class that runs it on FluxPipeline weights, made with from_pipe
FROM_PIPE = {"image-to-image": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"}
# request mode -> the class the weights folder itself must declare
OWN_PIPELINE = {"instruction-edit": "FluxKontextPipeline"}


def pipeline_class(path: Path) -> Any:
    """The diffusers class the folder's model_index.json declares, if fluxroute runs it.

    Raises:
        ConfigError: the folder declares another class (or none).
    """
    name = declared_pipeline(path)
    if name not in SUPPORTED_PIPELINES:
        raise ConfigError(unsupported_pipeline(path, name))
    return getattr(diffusers, name)


def load_pipeline(path: Path, device: str, plan: MemoryPlan, options: PipelineOptions) -> LoadedPipeline:
    """from_pretrained(path) of the declared class with local files only; bf16 on CUDA, float32 on the CPU; then
    placed and configured."""
    started = time.perf_counter()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = pipeline_class(path).from_pretrained(str(path), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if plan.name == "gpu":
        pipe.to("cuda")
    else:
        _offload(pipe, plan)
    notes = configure_pipeline(pipe, options, device=device, plan=plan.name)
    loaded = LoadedPipeline(pipe, path, device, plan, notes, time.perf_counter() - started, hooked=pipe)
    loaded.quantized = any(note.startswith(FP8_NOTE) for note in notes)
    log.info("loaded %s on %s, memory plan %s; %s", path, device, plan, ", ".join(notes) or "eager defaults")
    return loaded


def _offload(pipe: Any, plan: MemoryPlan) -> None:
    if plan.name == "model_offload":
        pipe.enable_model_cpu_offload()
    elif plan.name == "sequential_offload":
        pipe.enable_sequential_cpu_offload()


def pipeline_for_mode(loaded: LoadedPipeline, mode: str) -> Any:
    """The pipeline that runs a call of `mode` on the loaded weights: the loaded one for text-to-image (and for
    an instruction edit on Kontext weights); for image-to-image and inpaint on FluxPipeline weights, a
    FluxImg2ImgPipeline / FluxInpaintPipeline made once with from_pipe (the same components, no second copy).
    Under an offload plan the hooks move to the pipeline about to run (they sit on the shared components).

    Raises:
        ConfigError: these weights cannot run `mode` (Krea 2 or Kontext weights for image-to-image, say).
    """
    declared = type(loaded.pipe).__name__
    if mode == "text-to-image":
        pipe = loaded.pipe
    elif mode in OWN_PIPELINE:
        if declared != OWN_PIPELINE[mode]:
            raise ConfigError(f"the weights at {loaded.path} ({declared}) cannot run {mode}: {OWN_PIPELINE[mode]} does")
        pipe = loaded.pipe
    elif mode in FROM_PIPE and declared == "FluxPipeline":
        name = FROM_PIPE[mode]
        if name not in loaded.variants:
            variant = getattr(diffusers, name).from_pipe(loaded.pipe)
            variant.set_progress_bar_config(disable=True)
            loaded.variants[name] = variant
        pipe = loaded.variants[name]
    else:
        raise ConfigError(f"the weights at {loaded.path} ({declared}) cannot run {mode} locally")
    if loaded.plan.name in ("model_offload", "sequential_offload") and loaded.hooked is not pipe:
        _offload(pipe, loaded.plan)  # removes the other pipeline's hooks from the shared components first
        loaded.hooked = pipe
    return pipe


def configure_pipeline(pipe: Any, options: PipelineOptions, *, device: str, plan: str | None = "gpu") -> list[str]:
    """Apply `options` to a placed pipeline; returns what was applied, in words.

    Compilation and fp8 need the transformer resident on the GPU, so they are skipped under sequential offload
    (and fp8 on the CPU); a note says so.
    """
    notes: list[str] = []
    transformer = pipe.transformer
    if options.fuse_qkv:
        transformer.fuse_qkv_projections()
        notes.append("fused QKV projections")
    if options.attention_backend:
        transformer.set_attention_backend(options.attention_backend)
        notes.append(f"attention backend {options.attention_backend}")
    if options.channels_last_vae and device == "cuda":
        pipe.vae.to(memory_format=torch.channels_last)
        notes.append("channels-last VAE")
    if options.fp8:
        if device != "cuda" or plan != "gpu":
            notes.append("fp8 skipped (needs the whole pipeline on the GPU)")
        else:
            notes.append(_quantize_fp8(transformer))
    if options.compile:
        if plan == "sequential_offload":
            notes.append("compile skipped (sequential offload)")
        else:
            transformer.compile_repeated_blocks(fullgraph=True)
            notes.append("regional torch.compile of the transformer blocks")
    return notes


def _quantize_fp8(transformer: Any) -> str:
    try:
        from torchao.quantization import (  # type: ignore[import-not-found, unused-ignore]
            Float8DynamicActivationFloat8WeightConfig,
            quantize_,
        )
    except ImportError as exc:
        raise RuntimeError("FLUXROUTE_LOCAL_FP8 needs torchao (pip install torchao)") from exc
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig())
    return f"{FP8_NOTE} (torchao dynamic float8)"


def image_seeds(params: dict[str, object], seed: int) -> list[int]:
    """The seed of each image of a call: image i uses seed + i (as fal's krea-2 and Krea's own code do)."""
    count = params.get("num_images_per_prompt")
    return [seed + i for i in range(count if isinstance(count, int) and count > 0 else 1)]


def accepted_arguments(pipe: Any) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def pipeline_arguments(params: dict[str, object], seed: int, accepted: set[str] | None = None) -> dict[str, Any]:
    """A candidate's wire parameters (providers/wire.py local_kwargs) as the pipeline's __call__ arguments: only
    those in `accepted` (its signature) are passed (Krea2Pipeline takes no true_cfg_scale, for one)."""
    skip = {"seed", "output_format", "mode", "loras"}
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k not in skip and v is not None}
    if accepted is not None:
        dropped = sorted(set(kwargs) - accepted)
        if dropped:
            log.debug("not passed (the pipeline does not take them): %s", ", ".join(dropped))
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    # one CPU generator per image: each image is reproducible alone, and the noise is the same on every device
    kwargs["generator"] = [torch.Generator(device="cpu").manual_seed(s) for s in image_seeds(params, seed)]
    return kwargs


def run_pipeline(loaded: LoadedPipeline, params: dict[str, object], seed: int, on_step: StepCallback) -> list[Any]:
    """One generation; PIL images, image i from seed + i. `on_step` returning True interrupts before the next step
    (diffusers' flag)."""

    def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step(index + 1, int(pipe.num_timesteps)):
            pipe._interrupt = True
        return {}

    pipe = pipeline_for_mode(loaded, str(params.get("mode") or "text-to-image"))
    kwargs = pipeline_arguments(params, seed, accepted_arguments(pipe))
    with applied_loras(loaded, pipe, job_loras(params)), torch.inference_mode():
        output = pipe(**kwargs, callback_on_step_end=step_end, callback_on_step_end_tensor_inputs=[])
    images: list[Any] = list(output.images)
    return images


@dataclass(frozen=True)
class JobLora:
    """One LoRA of a job: the caller's reference, its file on this machine, its weight."""

    ref: str
    path: Path
    scale: float


def job_loras(params: dict[str, object]) -> list[JobLora]:
    """The `loras` the provider resolved to files (see LocalProvider.submit): [{"ref", "path", "scale"}]."""
    given = params.get("loras")
    if not isinstance(given, list):
        return []
    loras = []
    for entry in given:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ConfigError(f"LoRA {entry!r} was not resolved to a file on this machine")
        scale = entry.get("scale", 1.0)
        loras.append(JobLora(str(entry.get("ref")), Path(entry["path"]), float(scale) if scale is not None else 1.0))
    return loras


def _fused_qkv(transformer: Any) -> bool:
    return any(getattr(module, "fused_projections", False) for module in transformer.modules())


@contextlib.contextmanager
def applied_loras(loaded: LoadedPipeline, pipe: Any, loras: list[JobLora]) -> Iterator[None]:
    """`pipe` with exactly `loras` loaded and weighted while the body runs: LoRAs already resident (the same files,
    in the same order) are only weighted again; any others are unloaded first, so a job without LoRAs runs on the
    base weights.

    Raises:
        ConfigError: the pipeline takes no LoRA, its transformer is fp8-quantized, or a file does not fit it (keys
            of another architecture, say); nothing stays loaded.
    """
    wanted = tuple(lora.path for lora in loras)
    if loaded.loras != wanted:
        unload_loras(loaded, pipe)
    if not loras:
        yield
        return
    names = [f"fluxroute_{i}" for i in range(len(loras))]
    if not loaded.loras:
        _load_loras(loaded, pipe, loras, names)
    try:
        pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    except ValueError as exc:  # a file whose keys matched no layer loads as nothing: its adapter is missing
        unload_loras(loaded, pipe)
        refs = ", ".join(lora.ref for lora in loras)
        raise ConfigError(f"LoRAs {refs} do not fit {type(pipe).__name__}: {exc}") from exc
    log.info("LoRAs applied: %s", ", ".join(f"{lora.ref} x{lora.scale:g}" for lora in loras))
    yield


def _load_loras(loaded: LoadedPipeline, pipe: Any, loras: list[JobLora], names: list[str]) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise ConfigError(f"{type(pipe).__name__} takes no LoRA")
    if loaded.quantized:
        raise ConfigError("LoRAs are not applied to an fp8-quantized transformer (unset FLUXROUTE_LOCAL_FP8)")
    loaded.refuse_qkv = _fused_qkv(pipe.transformer)
    if loaded.refuse_qkv:
        pipe.transformer.unfuse_qkv_projections()
    loaded.loras = tuple(lora.path for lora in loras)  # from here on, unload_loras cleans up whatever loaded
    for name, lora in zip(names, loras, strict=True):
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            unload_loras(loaded, pipe)
            into = type(pipe).__name__
            raise ConfigError(f"LoRA {lora.ref} ({lora.path}) cannot be loaded into {into}: {exc}") from exc
        loaded.lora_loads += 1


def unload_loras(loaded: LoadedPipeline, pipe: Any) -> None:
    """Unload the resident LoRAs (if any) and fuse the QKV projections again if they were fused before."""
    if not loaded.loras:
        return
    pipe.unload_lora_weights()
    if loaded.refuse_qkv:
        pipe.transformer.fuse_qkv_projections()
    loaded.loras, loaded.refuse_qkv = (), False


def warm_up(loaded: LoadedPipeline, width: int, height: int) -> float:
    """Run two steps at this size so compilation happens before a caller's job is timed; seconds taken."""
    if (width, height) in loaded.warmed:
        return 0.0
    started = time.perf_counter()
    params: dict[str, object] = {"prompt": "warm-up", "width": width, "height": height, "num_inference_steps": 2}
    run_pipeline(loaded, params, 0, lambda step, total: False)
    loaded.warmed.add((width, height))
    return time.perf_counter() - started


def release(loaded: LoadedPipeline | None) -> None:
    """Drop a pipeline and give its GPU memory back."""
    if loaded is None:
        return
    loaded.pipe = loaded.hooked = None
    loaded.variants.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
