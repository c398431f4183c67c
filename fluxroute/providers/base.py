"""What every provider is: availability with a reason, and the shape of a call and its result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Availability:
    """Whether a provider can take calls here, and if not, why (in words a user can act on)."""

    ok: bool
    reason: str = ""
