"""Exact conversion between Decimal US dollars and the integer micro-dollars the ledger stores."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

MICROS_PER_USD = 1_000_000
_ONE_MICRO = Decimal("0.000001")
_CENTS = Decimal("0.01")


def to_micros(amount: Decimal) -> int:
    """Convert a USD amount to whole micro-dollars, rounding half-up past the sixth decimal place.

    Raises:
        TypeError: `amount` is a float (binary floats cannot hold prices exactly) or not a number.
        ValueError: `amount` is NaN or infinite.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"money amounts must be Decimal or int, got {type(amount).__name__}: {amount!r}")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"money amount must be finite, got {value}")
    with localcontext() as ctx:
        # the default 28-digit context could round a large amount before quantize sees it
        ctx.prec = max(28, len(value.as_tuple().digits) + 8)
        return int(value.quantize(_ONE_MICRO, rounding=ROUND_HALF_UP) * MICROS_PER_USD)


def from_micros(micros: int) -> Decimal:
    """Convert micro-dollars back to USD with no trailing zeros beyond what the value needs."""
    with localcontext() as ctx:
        ctx.prec = max(28, len(str(abs(micros))) + 1)
        return Decimal(micros) / MICROS_PER_USD


def usd(amount: Decimal) -> str:
    """Format a USD amount for messages: at least cents, more digits only when they are non-zero."""
    exact = from_micros(to_micros(amount))
    cents = exact.quantize(_CENTS)
    return f"${cents if cents == exact else exact}"
