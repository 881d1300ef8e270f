"""`python -m unit_convert QUANTITY UNIT`, e.g. `python -m unit_convert "12.5 km" mi` prints `12.5 km = 7.76714 mi`."""

from __future__ import annotations

import sys

from unit_convert import UnitError, convert, parse_quantity


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print('usage: python -m unit_convert QUANTITY UNIT   (e.g. "12.5 km" mi)', file=sys.stderr)
        return 2
    try:
        value, unit = parse_quantity(args[0])
        result = convert(value, unit, args[1])
    except UnitError as exc:
        print(f"unit_convert: {exc}", file=sys.stderr)
        return 2
    print(f"{value:g} {unit} = {result:g} {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
