"""Formatting the daily message."""

from __future__ import annotations

from weather_bot.client import Forecast


def daily_message(forecast: Forecast) -> str:
    """One line, e.g. `Berlin, 2026-11-25: rain, 2°C to 7°C, 3.1 mm of rain. Take an umbrella.`"""
    # TODO(autodev): format the message as REQUIREMENTS.md says (rounding, umbrella advice).
    raise NotImplementedError
