from weather_bot import Forecast, daily_message


def test_rainy_day_needs_an_umbrella():
    forecast = Forecast("Berlin", "2026-11-25", 1.6, 7.2, "rain", 3.1)
    assert daily_message(forecast) == "Berlin, 2026-11-25: rain, 2°C to 7°C, 3.1 mm of rain. Take an umbrella."


def test_halves_round_away_from_zero_and_dry_days_need_no_umbrella():
    forecast = Forecast("São Paulo", "2026-11-25", 18.5, 27.49, "sunny", 0.0)
    assert daily_message(forecast) == "São Paulo, 2026-11-25: sunny, 19°C to 27°C, 0.0 mm of rain. No umbrella needed."


def test_below_zero_and_just_under_one_millimetre():
    forecast = Forecast("Oslo", "2026-11-25", -4.5, -0.4, "snow", 0.96)
    assert daily_message(forecast) == "Oslo, 2026-11-25: snow, -5°C to 0°C, 1.0 mm of rain. No umbrella needed."
