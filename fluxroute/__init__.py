"""fluxroute: FLUX-family image generation for LLM agents, routed by cost, license and resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxroute.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    FieldError,
    FluxrouteError,
    InvalidRequest,
    NoRouteError,
    ProviderError,
)
from fluxroute.lazy import lazy_exports

if TYPE_CHECKING:
    from fluxroute.catalog import Catalog, load_catalog
    from fluxroute.router import Router
    from fluxroute.settings import Settings
    from fluxroute.types import Candidate, GeneratedImage, GenerationResult, ImageRequest, Plan, Rejection

__all__ = [
    "AllProvidersFailed",
    "BudgetExceeded",
    "Candidate",
    "Catalog",
    "FieldError",
    "FluxrouteError",
    "GeneratedImage",
    "GenerationResult",
    "ImageRequest",
    "InvalidRequest",
    "NoRouteError",
    "Plan",
    "ProviderError",
    "Rejection",
    "Router",
    "Settings",
    "load_catalog",
]
__version__ = "0.1.0"

# Imported on first access, so `import fluxroute` (and `fluxroute --version`) does not load pydantic models, the
# router or the provider stack; `from fluxroute import Router` works as before.
_LAZY = {
    "Catalog": "fluxroute.catalog",
    "load_catalog": "fluxroute.catalog",
    "Router": "fluxroute.router",
    "Settings": "fluxroute.settings",
    "Candidate": "fluxroute.types",
    "GeneratedImage": "fluxroute.types",
    "GenerationResult": "fluxroute.types",
    "ImageRequest": "fluxroute.types",
    "Plan": "fluxroute.types",
    "Rejection": "fluxroute.types",
}


__getattr__, __dir__ = lazy_exports("fluxroute", _LAZY, globals(), __all__)
