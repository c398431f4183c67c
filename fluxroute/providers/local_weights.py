"""Where local weights are (configured folders or the Hugging Face cache), their size, and the memory plan they fit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fluxroute.settings import Settings

GIB = 1024**3
# room for activations and the VAE decode at about 1 MP, beyond the weights themselves
HEADROOM_BYTES = 4 * GIB
WEIGHT_SUFFIXES = (".safetensors", ".bin")

PlanName = Literal["gpu", "model_offload", "sequential_offload", "cpu"]


@dataclass(frozen=True)
class MemoryPlan:
    """Where the pipeline's weights live while it runs, and why that was chosen (or why nothing fits)."""

    name: PlanName | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        return f"{self.name or 'refused'} ({self.reason})"


@dataclass(frozen=True)
class WeightSizes:
    """Bytes on disk of the components a pipeline loads (not of other files in the folder)."""

    total: int
    largest: int
    largest_name: str


def hf_cache_dirs() -> list[Path]:
    """Every folder the Hugging Face cache may be in, by the environment variables huggingface_hub reads
    (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME) and its default: a superset of the one it uses."""
    home = os.path.expanduser("~")
    hf_home = os.environ.get("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", f"{home}/.cache"), "huggingface"))
    candidates = [
        os.environ.get("HF_HUB_CACHE"),
        os.environ.get("HUGGINGFACE_HUB_CACHE"),
        os.path.join(hf_home, "hub"),
        os.path.join(home, ".cache", "huggingface", "hub"),
    ]
    return [Path(os.path.expandvars(os.path.expanduser(c))) for c in dict.fromkeys(c for c in candidates if c)]


def hf_cached_pipeline(repo_id: str) -> Path | None:
    """The snapshot folder of `repo_id` in the Hugging Face cache, if a diffusers pipeline is there; no network.

    huggingface_hub (tens of milliseconds to import) is asked only when it is loaded already or when a cache
    folder holds something of `repo_id`: without weights, looking costs a few stat calls."""
    if "huggingface_hub" not in sys.modules:
        folder = f"models--{repo_id.replace('/', '--')}"
        if not any((cache / folder).is_dir() for cache in hf_cache_dirs()):
            return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


# the repos FLUXROUTE_LOCAL_MODEL (settings.local_model) stands for: the FLUX.1 [dev] family it always served
LOCAL_MODEL_REPOS = ("black-forest-labs/FLUX.1-Krea-dev", "black-forest-labs/FLUX.1-dev")


def find_weights(settings: Settings, repo_ids: Sequence[str]) -> tuple[Path | None, str]:
    """The pipeline folder to load for one of `repo_ids`, or None and the reason in words a user can act on.

    For each repo in order: its folder in `local_models` (FLUXROUTE_LOCAL_MODELS); for FLUX.1 Krea [dev] and
    FLUX.1 [dev], FLUXROUTE_LOCAL_MODEL; else its snapshot in the Hugging Face cache. A folder configured but
    without model_index.json, or declaring a pipeline class fluxroute does not run, is reported, not skipped
    silently.
    """
    problems: list[str] = []
    # without repo ids (no catalog at hand), FLUXROUTE_LOCAL_MODEL is the folder asked about, as it always was
    asked = list(repo_ids) or (list(LOCAL_MODEL_REPOS[:1]) if settings.local_model is not None else [])
    for repo_id in asked:
        path, problem = _configured(settings, repo_id)
        if path is not None:
            return path, ""
        if problem:
            problems.append(problem)
            continue
        path = hf_cached_pipeline(repo_id)
        if path is not None:
            problem = check_pipeline(path)
            if not problem:
                return path, ""
            problems.append(problem)
    if problems:
        return None, "; ".join(dict.fromkeys(problems))
    unset = "no local weights configured (FLUXROUTE_LOCAL_MODELS maps a repo id to a diffusers folder"
    if any(repo in LOCAL_MODEL_REPOS for repo in repo_ids):
        unset += "; FLUXROUTE_LOCAL_MODEL names FLUX.1 Krea [dev] / [dev] weights"
    if not repo_ids:
        return None, unset + ")"
    return None, f"{unset}) and the Hugging Face cache holds none of: {', '.join(repo_ids)}"


def _configured(settings: Settings, repo_id: str) -> tuple[Path | None, str]:
    """The folder the settings name for `repo_id` (None, "" when they name none), or why it cannot be used."""
    if repo_id in settings.local_models:
        path, where = settings.local_models[repo_id], f"local_models[{repo_id!r}]"
    elif settings.local_model is not None and repo_id in LOCAL_MODEL_REPOS:
        path, where = settings.local_model, "FLUXROUTE_LOCAL_MODEL"
    else:
        return None, ""
    if not (path / "model_index.json").is_file():
        return None, f"no diffusers pipeline at {path} ({where}; model_index.json missing)"
    problem = check_pipeline(path)
    return (None, f"{problem} ({where})") if problem else (path, "")


# model_index.json `_class_name` -> what it runs; both are text-to-image, one transformer pass per step
SUPPORTED_PIPELINES = {
    "FluxPipeline": "FLUX.1 [dev], FLUX.1 Krea [dev], FLUX.1 [schnell]",
    "Krea2Pipeline": "Krea 2 Raw, Krea 2 Turbo",
}


def unsupported_pipeline(path: Path, name: str) -> str:
    supported = "; ".join(f"{cls} ({what})" for cls, what in SUPPORTED_PIPELINES.items())
    declared = f"declare {name}" if name else "declare no pipeline class"
    return f"the weights at {path} {declared} (model_index.json _class_name); fluxroute runs: {supported}"


def declared_pipeline(path: Path) -> str:
    """The pipeline class a weights folder declares (model_index.json `_class_name`), e.g. FluxPipeline; "" when
    the file names none or cannot be read."""
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) else ""


def check_pipeline(path: Path) -> str:
    """Why fluxroute cannot run the weights at `path` (a class it does not know), or "" when it can."""
    name = declared_pipeline(path)
    return "" if name in SUPPORTED_PIPELINES else unsupported_pipeline(path, name)


def weight_sizes(path: Path) -> WeightSizes:
    """Sizes of the components model_index.json names (a folder may also hold single-file checkpoints)."""
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    sizes: dict[str, int] = {}
    for name, spec in index.items():
        folder = path / name
        if name.startswith("_") or not isinstance(spec, list) or not folder.is_dir():
            continue
        sizes[name] = sum(f.stat().st_size for f in folder.iterdir() if f.name.endswith(WEIGHT_SUFFIXES))
    largest = max(sizes, key=lambda k: sizes[k], default="")
    return WeightSizes(sum(sizes.values()), sizes.get(largest, 0), largest)


def available_ram() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_memory_plan(
    free_gpu: int, sizes: WeightSizes, ram: int | None, forced: str = "auto", headroom: int = HEADROOM_BYTES
) -> MemoryPlan:
    """All on the GPU when it fits; else one component at a time (model offload); else layer by layer
    (sequential offload); else refuse, saying what is needed. Offloading keeps the rest in RAM."""
    if forced != "auto":
        return MemoryPlan(forced, "set by FLUXROUTE_LOCAL_MEMORY_PLAN")  # type: ignore[arg-type]
    free, total, largest = free_gpu / GIB, sizes.total / GIB, sizes.largest / GIB
    if sizes.total + headroom <= free_gpu:
        return MemoryPlan("gpu", f"{total:.1f} GiB of weights fit in {free:.1f} GiB free GPU memory")
    if ram is not None and ram < sizes.total:
        return MemoryPlan(
            None,
            f"not enough memory: {total:.1f} GiB of weights need more than the {free:.1f} GiB free on the GPU, "
            f"and offloading needs them in RAM ({ram / GIB:.1f} GiB available)",
        )
    if sizes.largest + headroom <= free_gpu:
        return MemoryPlan(
            "model_offload",
            f"{total:.1f} GiB of weights exceed {free:.1f} GiB free GPU memory; "
            f"one component at a time fits ({sizes.largest_name} {largest:.1f} GiB)",
        )
    if headroom <= free_gpu:
        return MemoryPlan(
            "sequential_offload",
            f"even {sizes.largest_name} ({largest:.1f} GiB) exceeds {free:.1f} GiB free GPU memory; "
            "layer by layer (slow)",
        )
    return MemoryPlan(
        None,
        f"not enough GPU memory: {free:.1f} GiB free, even sequential offload needs {headroom / GIB:.0f} GiB",
    )


def gpu_memory_plan(path: Path, settings: Settings) -> MemoryPlan:
    """The plan for loading `path` onto the current CUDA device, from its free memory now."""
    import torch  # type: ignore[import-not-found, unused-ignore]  # deferred: seconds to import

    free, _ = torch.cuda.mem_get_info()
    return choose_memory_plan(int(free), weight_sizes(path), available_ram(), settings.local_memory_plan)
