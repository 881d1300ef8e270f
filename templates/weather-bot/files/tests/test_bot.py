from weather_bot.bot import main


def test_prints_and_writes_the_message(weather_api, tmp_path, capsys):
    out = tmp_path / "today.txt"
    assert main(["--city", "Berlin", "--api", weather_api.url, "--out", str(out)]) == 0
    message = "Berlin, 2026-11-25: rain, 2°C to 7°C, 3.1 mm of rain. Take an umbrella."
    assert capsys.readouterr().out.strip() == message
    assert out.read_text(encoding="utf-8") == message + "\n"


def test_api_failure_exits_2_with_the_reason(weather_api, capsys):
    assert main(["--city", "Broken", "--api", weather_api.url]) == 2
    assert capsys.readouterr().err.startswith("weather unavailable:")
