"""Converting a value between two units of the same dimension."""

from __future__ import annotations

# The units this library knows, by dimension (symbols are case-sensitive).
UNITS: dict[str, tuple[str, ...]] = {
    "length": ("mm", "cm", "m", "km", "in", "ft", "mi"),
    "temperature": ("C", "F", "K"),
}


class UnitError(ValueError):
    """An unknown unit, units of different dimensions, an impossible value or unreadable text;
    the message names the units (or the text)."""


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """`value` in `from_unit` expressed in `to_unit`, rounded to 6 significant digits (see REQUIREMENTS.md)."""
    # TODO(autodev): convert lengths and temperatures; raise UnitError for unknown units, for
    # units of different dimensions (naming both) and for temperatures below absolute zero.
    raise NotImplementedError
