"""Local upscaling with spandrel: a super-resolution model (ESRGAN / Real-ESRGAN, Real-ESRGAN Compact, SwinIR, HAT,
...) loaded offline from one weights file and run over the image tile by tile, within the memory plan.

Which models run: spandrel's `ModelLoader().load_from_file` reads a .safetensors file as data and a .pth file through
its restricted unpickler (tensors and dicts only, no code), then detects the architecture from the state dict. Only an
`ImageModelDescriptor` whose purpose is "SR" (super-resolution), RGB in and out, of an architecture in spandrel's
main package is accepted: spandrel_extra_arches (non-commercial or copyleft architectures) is never imported, and an
inpainting, face-restoration or denoising model is refused before it runs.

How it runs: the input is cut into tiles (their size from the memory plan: local_weights.upscale_tile) with
UPSCALE_OVERLAP pixels of context on each side; each padded tile goes through the model, the context is cropped off
its output, and the rest is pasted into the 8-bit result, so no whole-image float tensor of the output's size exists.
With the context wider than what the model looks at around a pixel, the stitched result equals the untiled one. Tile
sizes are multiples of the model's `size_requirements.multiple_of` (spandrel pads the image edges itself); a model
that tiles internally (`ModelTiling.INTERNAL`) gets the whole image, one that discourages tiling gets it whole up to
four tiles' area. float16 (else bfloat16) on CUDA where the model supports it, float32 on the CPU. The model's
native-scale result is resized with Lanczos to the exact size asked for when the scale differs (x2 with a x4 model).

Importing spandrel without torchvision: `import spandrel` imports every architecture, and two of them import
torchvision at module import (LaMa: `InterpolationMode, rotate`; RestoreFormer: `normalize`, both from
torchvision.transforms.functional). No torchvision build works with a CPU-only torch from a local wheel (0.28's
compiled ops need the CUDA torch libraries; 0.29 pulls torch 2.14 and GBs of CUDA), so there fluxroute installs
spandrel with `pip install --no-deps spandrel einops`. import_spandrel then imports torchvision if it can, else puts
placeholder `torchvision`, `torchvision.transforms` and `torchvision.transforms.functional` modules into sys.modules
for the duration of `import spandrel` only and removes them again: every name imported from them is a placeholder
that raises a clear error if ever used. Only LaMa (inpainting) and RestoreFormer (face restoration) hold them, and
fluxroute loads super-resolution models only, so they are never called. Nothing else sees the placeholders (the
import runs under a lock; other code importing torchvision at that very moment is the one, unlikely, exception).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from PIL import Image

from fluxroute.errors import ProviderUnavailable
from fluxroute.providers.local_weights import UPSCALE_OVERLAP

NAME = "local"
INSTALL_HINT = (
    "pip install 'fluxroute[upscale]' (with a CPU-only torch: pip install --no-deps spandrel einops, "
    "since spandrel's dependency on torchvision would replace torch)"
)
TORCHVISION_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")

# (tile index from 1, tile count) -> True to stop before the next tile
TileCallback = Callable[[int, int], bool]

_import_lock = threading.Lock()


class TorchvisionPlaceholder:
    """Stands for a torchvision name spandrel imports but fluxroute never uses; any use raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self) -> RuntimeError:
        return RuntimeError(
            f"torchvision.{self._name} is not installed: fluxroute imported spandrel without torchvision and runs "
            "super-resolution models only (LaMa inpainting and RestoreFormer face restoration need torchvision)"
        )

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise self._refuse()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise self._refuse()

    def __repr__(self) -> str:
        return f"<torchvision placeholder {self._name}>"


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "placeholder installed by fluxroute while importing spandrel (no torchvision)")

    def __getattr__(attr: str) -> Any:  # PEP 562: every non-dunder name is a placeholder
        if attr.startswith("__"):
            raise AttributeError(attr)
        return TorchvisionPlaceholder(f"{name.removeprefix('torchvision.')}.{attr}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__path__ = []  # a package, so its submodules can be imported
    return module


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except Exception:  # installed but broken (compiled ops built for another torch)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def import_spandrel() -> types.ModuleType:
    """spandrel, imported with placeholders for torchvision where torchvision cannot be imported (see the module
    docstring); the placeholders are out of sys.modules again when this returns.

    Raises:
        ImportError: spandrel (or one of its own dependencies, e.g. einops) is not installed.
    """
    with _import_lock:
        loaded = sys.modules.get("spandrel")
        if loaded is not None:
            return loaded
        if _torchvision_works():
            import spandrel  # type: ignore[import-untyped, import-not-found, unused-ignore]

            return cast(types.ModuleType, spandrel)
        saved = {name: sys.modules.get(name) for name in TORCHVISION_MODULES}
        try:
            for name in TORCHVISION_MODULES:
                sys.modules[name] = _placeholder_module(name)
            import spandrel  # type: ignore[import-untyped, import-not-found, unused-ignore]
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        return cast(types.ModuleType, spandrel)


def spandrel_missing() -> str | None:
    """Why local upscaling cannot run here (torch or spandrel missing, or spandrel fails to import), or None."""
    missing = [name for name in ("torch", "spandrel") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed: local upscaling needs spandrel ({INSTALL_HINT})"
    try:
        import_spandrel()
    except Exception as exc:
        return f"spandrel cannot be imported ({type(exc).__name__}: {str(exc)[:160]}; {INSTALL_HINT})"
    return None


@dataclasses.dataclass
class LoadedUpscaler:
    """An upscaler kept warm on one device: its file, spandrel's descriptor, and how it was loaded."""

    path: Path
    descriptor: Any  # spandrel.ImageModelDescriptor
    device: str
    dtype: str  # "float16", "bfloat16" or "float32"
    load_s: float
    weight_bytes: int

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.dtype == "float32" else 2


def _refused(path: Path, why: str) -> ProviderUnavailable:
    # this machine cannot run that file; another offer (a hosted upscaler) may: unbilled, nothing ran
    return ProviderUnavailable(
        f"the upscaler weights at {path} {why}; nothing was run", provider=NAME, billing="unbilled"
    )


def load_upscaler(path: Path, device: str) -> LoadedUpscaler:
    """The super-resolution model in `path`, on `device` ("cuda" or "cpu") in the dtype it supports there.

    Raises:
        ProviderUnavailable: unbilled — the file is unreadable, not a model spandrel's main package knows, or not an
            RGB super-resolution model.
    """
    try:
        spandrel = import_spandrel()
    except Exception as exc:
        raise ProviderUnavailable(f"spandrel cannot be imported ({exc}; {INSTALL_HINT})", provider=NAME) from exc
    import torch  # type: ignore[import-not-found, unused-ignore]

    began = time.monotonic()
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(path)
    except spandrel.UnsupportedModelError:
        raise _refused(path, "are of no architecture spandrel knows") from None
    except Exception as exc:  # unreadable, a pickle global the restricted unpickler forbids, a damaged state dict
        raise _refused(path, f"cannot be loaded ({type(exc).__name__}: {str(exc)[:160]})") from None
    architecture = descriptor.architecture
    if type(architecture).__module__.split(".")[0] != "spandrel" or architecture.id not in spandrel.MAIN_REGISTRY:
        raise _refused(path, f"are a {architecture.name} model, not of spandrel's main package")
    purpose = getattr(descriptor, "purpose", "?")
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or purpose != "SR":
        raise _refused(
            path,
            f"are a {architecture.name} model for {purpose} ({_PURPOSES.get(purpose, purpose)}); "
            "fluxroute upscales with super-resolution (SR) models only",
        )
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise _refused(path, f"take {descriptor.input_channels} channels to {descriptor.output_channels}, not RGB")
    dtype = torch.float32
    if device == "cuda":
        if descriptor.supports_half:
            dtype = torch.float16
        elif descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
    descriptor.to(torch.device(device))
    descriptor.to(dtype)
    descriptor.eval()
    return LoadedUpscaler(
        path, descriptor, device, str(dtype).removeprefix("torch."), time.monotonic() - began, path.stat().st_size
    )


_PURPOSES = {"FaceSR": "face restoration", "Inpainting": "inpainting", "Restoration": "restoration at 1x"}


def release(loaded: LoadedUpscaler | None) -> None:
    """Drop an upscaler and give its GPU memory back."""
    if loaded is None:
        return
    device = loaded.device
    loaded.descriptor = None
    if device == "cuda":
        import gc

        import torch  # type: ignore[import-not-found, unused-ignore]

        gc.collect()
        torch.cuda.empty_cache()


@dataclasses.dataclass(frozen=True)
class Tile:
    """One piece of the input: `core` is what it contributes to the result, `padded` what the model sees (the core
    and up to `overlap` pixels of context on each side); boxes are (left, top, right, bottom) in input pixels."""

    core: tuple[int, int, int, int]
    padded: tuple[int, int, int, int]


def tile_edge(loaded: LoadedUpscaler, width: int, height: int, planned: int) -> tuple[int, str]:
    """The tile edge to use for a width x height input given the planned one, following the model's tiling advice
    and size requirements; and a note when the advice changed it."""
    spandrel = import_spandrel()
    descriptor = loaded.descriptor
    whole = max(width, height)
    if descriptor.tiling == spandrel.ModelTiling.INTERNAL:
        return whole, "the model tiles internally: the whole image at once"
    if descriptor.tiling == spandrel.ModelTiling.DISCOURAGED:
        if width * height <= 4 * planned * planned:
            return whole, "the model discourages tiling: the whole image at once"
        note = "the model discourages tiling, but the image is too large to run at once: tiled (seams are possible)"
    else:
        note = ""
    requirements = descriptor.size_requirements
    multiple = max(1, int(requirements.multiple_of))
    edge = max(planned // multiple * multiple, int(requirements.minimum), multiple)
    return edge, note


def plan_tiles(width: int, height: int, edge: int, overlap: int, multiple_of: int = 1) -> list[Tile]:
    """Tiles covering a width x height input, row by row; one tile when it fits in one."""
    if width <= edge and height <= edge:
        return [Tile((0, 0, width, height), (0, 0, width, height))]
    overlap = -(-overlap // multiple_of) * multiple_of  # padded tiles stay multiples where they are inside the image
    tiles = []
    for top in range(0, height, edge):
        for left in range(0, width, edge):
            right, bottom = min(left + edge, width), min(top + edge, height)
            padded = (
                max(0, left - overlap),
                max(0, top - overlap),
                min(width, right + overlap),
                min(height, bottom + overlap),
            )
            tiles.append(Tile((left, top, right, bottom), padded))
    return tiles


def upscale(
    loaded: LoadedUpscaler,
    image: Image.Image,
    size: tuple[int, int],
    edge: int,
    on_tile: TileCallback,
    overlap: int = UPSCALE_OVERLAP,
) -> Image.Image | None:
    """`image` upscaled by the model and brought to exactly `size` (Lanczos where the model's scale gives another
    size); None when `on_tile` asked to stop (it is called after each tile).

    Memory: the 8-bit result at the model's scale, the input as 8-bit, and one padded tile's activations."""
    import numpy as np
    import torch  # type: ignore[import-not-found, unused-ignore]

    descriptor, scale = loaded.descriptor, loaded.scale
    device, dtype = torch.device(loaded.device), getattr(torch, loaded.dtype)
    source = np.asarray(image.convert("RGB"))  # (height, width, 3) uint8
    height, width = source.shape[:2]
    multiple = max(1, int(descriptor.size_requirements.multiple_of))
    tiles = plan_tiles(width, height, edge, overlap, multiple)
    result = Image.new("RGB", (width * scale, height * scale))
    for index, tile in enumerate(tiles, start=1):
        piece = _run_tile(descriptor, source, tile, scale, device, dtype)
        result.paste(piece, (tile.core[0] * scale, tile.core[1] * scale))
        del piece
        if on_tile(index, len(tiles)):
            return None
    del source
    if result.size != size:
        result = result.resize(size, Image.Resampling.LANCZOS)
    return result


def _run_tile(descriptor: Any, source: Any, tile: Tile, scale: int, device: Any, dtype: Any) -> Image.Image:
    """One tile through the model: its core's output as an 8-bit image (the context cropped off)."""
    import numpy as np
    import torch  # type: ignore[import-not-found, unused-ignore]

    left, top, right, bottom = tile.padded
    with torch.inference_mode():
        piece = torch.from_numpy(source[top:bottom, left:right].copy())  # writable and contiguous
        piece = piece.to(device).permute(2, 0, 1).unsqueeze(0).to(dtype).div_(255).contiguous()  # NCHW
        output = descriptor(piece)
        del piece
        core_left, core_top, core_right, core_bottom = tile.core
        kept = output[
            0,
            :,
            (core_top - top) * scale : (core_bottom - top) * scale,
            (core_left - left) * scale : (core_right - left) * scale,
        ]
        # spandrel clamped the output to [0, 1]: rounded, it is within 0..255
        pixels = kept.float().mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        del output, kept
    return Image.fromarray(np.ascontiguousarray(pixels))
