"""Reading quantities such as "12.5 km"."""

from __future__ import annotations

from unit_convert.conversions import UNITS, UnitError  # noqa: F401 (for the implementation)


def parse_quantity(text: str) -> tuple[float, str]:
    """`"12.5 km"` -> `(12.5, "km")`; UnitError naming the text for anything else."""
    # TODO(autodev): read a decimal number, optional spaces and a known unit, as REQUIREMENTS.md says.
    raise NotImplementedError
