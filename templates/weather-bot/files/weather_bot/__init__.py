"""Weather Bot: today's forecast from an HTTP weather API, as one daily message."""

from weather_bot.client import Forecast, WeatherAPIError, fetch_forecast
from weather_bot.message import daily_message

__all__ = ["Forecast", "WeatherAPIError", "daily_message", "fetch_forecast"]
