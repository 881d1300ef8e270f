import socket

import pytest

from weather_bot import Forecast, WeatherAPIError, fetch_forecast


def test_todays_forecast(weather_api):
    assert fetch_forecast(weather_api.url, "Berlin") == Forecast("Berlin", "2026-11-25", 1.6, 7.2, "rain", 3.1)


def test_city_is_url_encoded(weather_api):
    assert fetch_forecast(weather_api.url, "São Paulo").condition == "sunny"
    assert weather_api.requests == ["/forecast?city=S%C3%A3o+Paulo"] or weather_api.requests == ["/forecast?city=S%C3%A3o%20Paulo"]


@pytest.mark.parametrize("city, problem", [("Atlantis", "404"), ("Broken", "500"), ("Garbage", "JSON"), ("Partial", "min_c")])
def test_bad_answers_raise_with_city_and_problem(weather_api, city, problem):
    with pytest.raises(WeatherAPIError) as caught:
        fetch_forecast(weather_api.url, city)
    assert city in str(caught.value) and problem in str(caught.value)


def test_timeout(weather_api):
    with pytest.raises(WeatherAPIError, match="Slow"):
        fetch_forecast(weather_api.url, "Slow", timeout_s=0.3)


def test_unreachable_api():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeatherAPIError, match="Berlin"):
        fetch_forecast(f"http://127.0.0.1:{port}", "Berlin", timeout_s=1)
