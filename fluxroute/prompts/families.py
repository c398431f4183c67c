"""The model families the prompt helpers write for, and what the built-in catalog says about each."""

from __future__ import annotations

import functools
from typing import Literal

from fluxroute.catalog import Catalog, Offer, load_catalog

FamilyId = Literal["flux-krea-dev", "flux-dev", "krea-2", "flux-schnell", "flux-kontext-dev"]
FAMILIES: tuple[FamilyId, ...] = ("flux-krea-dev", "flux-dev", "krea-2", "flux-schnell", "flux-kontext-dev")


@functools.cache
def builtin_catalog() -> Catalog:
    """The catalog shipped with fluxroute, read once (it is frozen data)."""
    return load_catalog()


def check_family(model: str) -> FamilyId:
    """`model` as a family id.

    Raises:
        ValueError: `model` is not one of the families there are guides for.
    """
    for family in FAMILIES:
        if model == family:
            return family
    raise ValueError(f"model must be one of {', '.join(FAMILIES)}; got {model!r}")


def family_name(model: FamilyId) -> str:
    """The model's display name, e.g. 'FLUX.1 Krea [dev]'."""
    return builtin_catalog().model(model).name


def is_distilled(model: FamilyId) -> bool:
    """Guidance-distilled models take guidance as an input and have no negative prompt without true CFG."""
    return builtin_catalog().model(model).guidance_distilled


def offers_for(model: str, catalog: Catalog | None = None) -> tuple[Offer, ...]:
    """Every offer serving `model` ("auto": every offer)."""
    offers = (catalog or builtin_catalog()).offers
    return offers if model == "auto" else tuple(o for o in offers if o.model == model)
