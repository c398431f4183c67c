"""Provider registry: built-ins in one explicit dict, imported lazily (local pulls in torch only when used)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fluxroute.providers.base import (
    Availability,
    Progress,
    ProgressCallback,
    Provider,
    ProviderImage,
    ProviderResult,
)
from fluxroute.settings import Settings

__all__ = [
    "BUILTIN_PROVIDERS",
    "Availability",
    "Progress",
    "ProgressCallback",
    "Provider",
    "ProviderImage",
    "ProviderResult",
    "create_provider",
]

# provider name -> "module:class"
BUILTIN_PROVIDERS: dict[str, str] = {
    "krea": "fluxroute.providers.krea:KreaProvider",
    "fal": "fluxroute.providers.fal:FalProvider",
    "local": "fluxroute.providers.local:LocalProvider",
    "ray": "fluxroute.providers.ray_fleet:RayFleetProvider",
}


def create_provider(name: str, settings: Settings) -> Provider:
    """A provider instance for `name`, importing its module on first use."""
    module_name, _, class_name = BUILTIN_PROVIDERS[name].partition(":")
    factory: Callable[[Settings], Provider] = getattr(importlib.import_module(module_name), class_name)
    return factory(settings)
