"""Where local weights are (configured folders or the Hugging Face cache), their size, and the memory plan they fit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
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


# model_index.json `_class_name` -> what it runs; one transformer pass per step. FluxPipeline weights also serve
# image-to-image and inpainting (FluxImg2ImgPipeline / FluxInpaintPipeline made with from_pipe, sharing them)
SUPPORTED_PIPELINES = {
    "FluxPipeline": "FLUX.1 [dev], FLUX.1 Krea [dev], FLUX.1 [schnell]",
    "Krea2Pipeline": "Krea 2 Raw, Krea 2 Turbo",
    "FluxKontextPipeline": "FLUX.1 Kontext [dev]",
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


# ---- single weights files: LoRAs, upscalers (offline only: a local run never downloads) ----


@dataclass(frozen=True)
class FileKind:
    """What kind of single weights file a reference names, and where it may be configured: the wording of every
    message find_file gives, and the files it accepts."""

    label: str  # "LoRA", "upscaler"
    setting: str  # the Settings field mapping references to files or folders
    env: str  # its environment variable
    suffixes: tuple[str, ...]  # the file types that may be loaded
    suffix_note: str  # why only those
    default_file: str | None = None  # the file a folder is read for first, if any
    url_hint: str = ""  # what to do instead of giving a URL


LORA_SUFFIX = ".safetensors"
# the file diffusers' save_lora_weights writes, and load_lora_weights looks for first in a folder or repo
DEFAULT_LORA_FILE = "pytorch_lora_weights.safetensors"
LORA = FileKind(
    "LoRA",
    "local_loras",
    "FLUXROUTE_LOCAL_LORAS",
    (LORA_SUFFIX,),
    "only safetensors are loaded",
    DEFAULT_LORA_FILE,
    ", or let fal load the URL",
)
# spandrel reads both: safetensors as data, .pth through its restricted unpickler (plain tensors and dicts only)
UPSCALER = FileKind(
    "upscaler",
    "local_upscalers",
    "FLUXROUTE_LOCAL_UPSCALERS",
    (".safetensors", ".pth"),
    "spandrel loads safetensors, and .pth through its restricted unpickler",
)


def find_lora(settings: Settings, ref: str) -> tuple[Path | None, str]:
    """The .safetensors file of a LoRA reference on this machine, or None and why not, in words a user can act on.

    `ref` is a Hugging Face repo `owner/name`, optionally followed by a path inside it (`owner/name/dir/x.safetensors`).
    Looked up as find_file says, in `local_loras` (FLUXROUTE_LOCAL_LORAS); without a path, a folder's
    pytorch_lora_weights.safetensors, else its only .safetensors file. A Krea style runs only on Krea. Only
    safetensors files are loaded (a pickled .bin could run code).
    """
    if ref.startswith("krea:"):
        return None, f"LoRA {ref}: a Krea style runs only on Krea"
    return find_file(settings.local_loras, ref, LORA)


def find_upscaler(settings: Settings, ref: str) -> tuple[Path | None, str]:
    """The weights file of an upscaler reference (a local upscale offer's endpoint, `owner/name/file.pth`) on this
    machine, or None and why not; looked up as find_file says, in `local_upscalers` (FLUXROUTE_LOCAL_UPSCALERS).
    Every reason names FLUXROUTE_LOCAL_UPSCALERS."""
    path, reason = find_file(settings.local_upscalers, ref, UPSCALER)
    if path is None and UPSCALER.env not in reason:
        reason += f" (FLUXROUTE_LOCAL_UPSCALERS maps {ref} to its file)"
    return path, reason


def find_file(mapping: Mapping[str, Path], ref: str, kind: FileKind) -> tuple[Path | None, str]:
    """The weights file a reference names on this machine, or None and why not, in words a user can act on.

    `ref` is a Hugging Face repo `owner/name`, optionally followed by a path inside it (`owner/name/dir/file`).
    Looked up, without any network: the whole ref, then `owner/name`, in `mapping` (the kind's setting: a file, or a
    folder the rest of the path is read in); else the repo's snapshot in the Hugging Face cache. Without a path, a
    folder's default file (if the kind has one), else its only file of an accepted type. An https URL is never
    downloaded (local runs use offline weights only), and a ref with an empty, `.` or `..` segment is refused:
    nothing outside the configured folder or the repo's snapshot is ever read. Only the kind's file types load.
    """
    label = kind.label
    if "://" in ref:
        return None, (
            f"{label} {_without_query(ref)}: local inference never downloads; it loads {label} weights already on this "
            f"machine only (download the file and name it in {kind.env}{kind.url_hint})"
        )
    parts = ref.split("/")
    if len(parts) < 2 or "\\" in ref or any(part in ("", ".", "..") for part in parts):
        return None, (
            f"{label} {ref!r}: not a Hugging Face repo owner/name[/path/file{kind.suffixes[0]}] (no '.' or '..' parts)"
        )
    repo, inner = "/".join(parts[:2]), parts[2:]
    if ref in mapping:
        return _weights_file(mapping[ref], [], f"{kind.setting}[{ref!r}]", ref, kind)
    if repo in mapping:
        return _weights_file(mapping[repo], inner, f"{kind.setting}[{repo!r}]", ref, kind)
    snapshot = hf_cached_snapshot(repo)
    if snapshot is not None:
        return _weights_file(snapshot, inner, f"the Hugging Face cache of {repo}", ref, kind)
    return None, (
        f"{label} {ref}: not on this machine (local runs use offline weights only: name its file in "
        f"{kind.env}, or download {repo} into the Hugging Face cache)"
    )


def _without_query(url: str) -> str:
    """A URL as shown in messages: without its query and fragment (they may carry a token)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _weights_file(root: Path, inner: Sequence[str], where: str, ref: str, kind: FileKind) -> tuple[Path | None, str]:
    """The file `root` (a file or a folder) and `inner` (checked path parts inside it) name, or why none."""
    label, accepted = kind.label, " or ".join(kind.suffixes)
    if inner:
        if not root.is_dir():
            return None, f"{label} {ref}: {where} is {root}, not a folder a path can be read in"
        root = root.joinpath(*inner)
    if root.is_dir():
        chosen = root / kind.default_file if kind.default_file else None
        if chosen is None or not chosen.is_file():
            found = sorted(p.name for p in root.iterdir() if p.name.endswith(kind.suffixes) and p.is_file())
            if not found:
                return None, f"{label} {ref}: no {accepted} file in {root} ({where})"
            if len(found) > 1:
                listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                return None, (
                    f"{label} {ref}: {root} ({where}) holds several {label} files ({listed}); name one: {ref}/<file>"
                )
            chosen = root / found[0]
        root = chosen
    if not root.is_file():
        return None, f"{label} {ref}: no file at {root} ({where})"
    if not root.name.endswith(kind.suffixes):
        return None, f"{label} {ref}: {root} ({where}) is not a {accepted} file ({kind.suffix_note})"
    return root, ""


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of model repo `repo_id` (its main revision), without any network: huggingface_hub's
    snapshot_download with local_files_only, asked only for cache folders that hold something of the repo."""
    folder = f"models--{repo_id.replace('/', '--')}"
    caches = [cache for cache in hf_cache_dirs() if (cache / folder).is_dir()]
    if not caches:
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    for cache in caches:
        try:
            found = snapshot_download(repo_id, cache_dir=cache, local_files_only=True)
        except Exception:  # not cached at its main revision (huggingface_hub's LocalEntryNotFoundError), or unreadable
            continue
        if isinstance(found, str) and Path(found).is_dir():
            return Path(found)
    return None


# ---- upscaler tiles (local_upscale.py): how large a piece of the input one model call sees ----

# input tile edge on the CPU: a 4x ESRGAN's float32 activations for a 256 + 2 x 32 px piece stay within about
# 1.5 GB (the 4x layers: 1280² px x 64 channels x 4 bytes = 420 MB each), and the overlap costs 1.56x the compute
CPU_UPSCALE_TILE = 256
# input pixels of context on each side of a tile, cropped off its output: seams vanish once this covers what a
# model looks at around a pixel (Real-ESRGAN's own tool uses 10; a 4x ESRGAN barely changes beyond 32)
UPSCALE_OVERLAP = 32
MIN_UPSCALE_TILE = 64
MAX_UPSCALE_TILE = 2048
# working memory per input pixel of a padded tile, in values of the compute dtype: a 4x ESRGAN (64 filters) holds
# about 200 channels at the input scale and 3 x 64 channels x 16 pixels at 4x at once; rounded up to leave room
UPSCALE_VALUES_PER_PIXEL = 4096
# the share of free GPU memory (after the upscaler's weights) one tile may use
UPSCALE_GPU_SHARE = 0.5


def upscale_tile(free_bytes: int | None, dtype_bytes: int, overlap: int = UPSCALE_OVERLAP) -> tuple[int | None, str]:
    """The input tile edge (px, a multiple of 64) for an upscale, and why; None when even the smallest tile does not
    fit. `free_bytes` is the GPU's free memory with the upscaler loaded, None on the CPU (a fixed, conservative
    tile)."""
    if free_bytes is None:
        return CPU_UPSCALE_TILE, f"CPU: {CPU_UPSCALE_TILE} px input tiles, {overlap} px overlap"
    budget = free_bytes * UPSCALE_GPU_SHARE
    padded = int((budget / (UPSCALE_VALUES_PER_PIXEL * dtype_bytes)) ** 0.5)
    tile = min(MAX_UPSCALE_TILE, (padded - 2 * overlap) // 64 * 64)
    free = free_bytes / GIB
    if tile < MIN_UPSCALE_TILE:
        return None, f"not enough GPU memory to upscale: {free:.1f} GiB free, a {MIN_UPSCALE_TILE} px tile needs more"
    return tile, f"{tile} px input tiles, {overlap} px overlap ({free:.1f} GiB free GPU memory)"


def upscaler_fits(free_bytes: int, weight_bytes: int, dtype_bytes: int) -> bool:
    """Whether an upscaler of `weight_bytes` (on disk, float32 or half) and its smallest tile fit in `free_bytes` of
    GPU memory: when not, a warm pipeline on the GPU is released first."""
    smallest = (MIN_UPSCALE_TILE + 2 * UPSCALE_OVERLAP) ** 2 * UPSCALE_VALUES_PER_PIXEL * dtype_bytes
    return weight_bytes + smallest / UPSCALE_GPU_SHARE <= free_bytes
