"""Fetching today's forecast from the weather API."""

from __future__ import annotations

from dataclasses import dataclass


class WeatherAPIError(Exception):
    """The weather API failed or answered something unusable; the message names city and problem."""


@dataclass(frozen=True)
class Forecast:
    city: str
    date: str
    min_c: float
    max_c: float
    condition: str
    precip_mm: float


def fetch_forecast(api: str, city: str, timeout_s: float = 5) -> Forecast:
    """Today's forecast for `city` from `GET {api}/forecast?city=NAME` (see REQUIREMENTS.md)."""
    # TODO(autodev): request the forecast, check the answer, return the first day as a Forecast;
    # raise WeatherAPIError for a non-200 answer, an unreachable API, a timeout, bad JSON or missing fields.
    raise NotImplementedError
