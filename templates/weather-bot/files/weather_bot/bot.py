"""The command line: `python -m weather_bot --city NAME --api URL [--out FILE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weather_bot.client import WeatherAPIError, fetch_forecast
from weather_bot.message import daily_message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weather_bot", description="Print today's weather message.")
    parser.add_argument("--city", default="{{ city }}")
    parser.add_argument("--api", required=True, help="base URL of the weather API")
    parser.add_argument("--out", type=Path, help="also write the message to this file")
    args = parser.parse_args(argv)
    try:
        message = daily_message(fetch_forecast(args.api, args.city))
    except WeatherAPIError as exc:
        print(f"weather unavailable: {exc}", file=sys.stderr)
        return 2
    print(message)
    if args.out:
        args.out.write_text(message + "\n", encoding="utf-8")
    return 0
