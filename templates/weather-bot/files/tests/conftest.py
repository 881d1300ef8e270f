import pytest

from tests.mock_api import MockWeatherAPI


@pytest.fixture
def weather_api():
    with MockWeatherAPI() as api:
        yield api
