"""Unit Convert: lengths and temperatures between units, and quantities like "12.5 km"."""

from unit_convert.conversions import UNITS, UnitError, convert
from unit_convert.parsing import parse_quantity

__all__ = ["UNITS", "UnitError", "convert", "parse_quantity"]
