"""fluxroute: FLUX-family image generation for LLM agents, routed by cost, license and resolution."""

from fluxroute.catalog import Catalog, load_catalog
from fluxroute.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    FieldError,
    FluxrouteError,
    InvalidRequest,
    NoRouteError,
    ProviderError,
)
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
