"""Tiny random-weight upscalers built at test time with spandrel's own architecture classes (no hub, no binaries in
the repository), saved as .safetensors files the local provider then loads through spandrel's ModelLoader, as users'
Real-ESRGAN files are: an ESRGAN (RRDB, the Real-ESRGAN x4 architecture) of 8 filters and 1 block; a Real-ESRGAN
Compact (SRVGG) of 8 features, about 50x cheaper per pixel, for the large-image memory test; a DnCNN denoiser (a 1x
"Restoration" model, which the provider must refuse). Deterministic: each is seeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.needs import missing


def require_spandrel() -> Any:
    """spandrel, imported the way fluxroute imports it (without torchvision where there is none); skipped when torch
    or spandrel is missing, failed under CI=true (`.ci/run` installs both)."""
    from fluxroute.providers.local_upscale import INSTALL_HINT, import_spandrel, spandrel_missing

    reason = spandrel_missing()
    if reason is not None:
        missing(f"{reason}: {INSTALL_HINT}")
    return import_spandrel()


def _save(module: Any, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in module.state_dict().items()}, str(path))
    return path


def build_tiny_esrgan(path: Path, *, scale: int = 4, seed: int = 0) -> Path:
    """A random ESRGAN (8 filters, 1 RRDB block) at `scale`, written to `path` (.safetensors)."""
    require_spandrel()
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return _save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale), path)


def build_tiny_compact(path: Path, *, seed: int = 0) -> Path:
    """A random Real-ESRGAN Compact (SRVGGNetCompact: 8 features, 2 convolutions) at x4, written to `path`."""
    require_spandrel()
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    return _save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), path)


def build_tiny_denoiser(path: Path, *, seed: int = 0) -> Path:
    """A random DnCNN (a 1x denoiser: purpose "Restoration", not super-resolution), written to `path`."""
    require_spandrel()
    import torch
    from spandrel.architectures.DnCNN import DnCNN

    torch.manual_seed(seed)
    return _save(DnCNN(in_nc=3, out_nc=3, nc=8, nb=17), path)
