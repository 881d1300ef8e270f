import pytest

from unit_convert import UnitError, convert


@pytest.mark.parametrize(
    "value, from_unit, to_unit, expected",
    [
        (2500, "m", "km", 2.5),
        (1500, "mm", "m", 1.5),
        (12.5, "cm", "mm", 125.0),
        (1, "in", "cm", 2.54),
        (1, "ft", "in", 12.0),
        (1, "mi", "ft", 5280.0),
        (3, "km", "km", 3.0),
    ],
)
def test_lengths(value, from_unit, to_unit, expected):
    assert convert(value, from_unit, to_unit) == expected


@pytest.mark.parametrize(
    "value, from_unit, to_unit, expected",
    [
        (100, "C", "F", 212.0),
        (-40, "F", "C", -40.0),
        (98.6, "F", "C", 37.0),
        (0, "K", "C", -273.15),
        (25, "C", "K", 298.15),
        (300, "K", "F", 80.33),
        (32, "F", "F", 32.0),
    ],
)
def test_temperatures(value, from_unit, to_unit, expected):
    assert convert(value, from_unit, to_unit) == expected


def test_the_result_is_a_float():
    assert isinstance(convert(1, "km", "m"), float)


@pytest.mark.parametrize(
    "value, from_unit, to_unit, expected",
    [
        (1, "mi", "km", 1.60934),
        (1, "m", "in", 39.3701),
        (1, "mm", "mi", 6.21371e-07),
        (12345.678, "km", "mm", 1.23457e10),
        (5, "km", "mi", 3.10686),
    ],
)
def test_results_keep_six_significant_digits(value, from_unit, to_unit, expected):
    assert convert(value, from_unit, to_unit) == expected


@pytest.mark.parametrize("from_unit, to_unit", [("yd", "m"), ("km", "KM"), ("m", "C"), ("K", "ft")])
def test_unknown_units_and_mixed_dimensions_name_both_units(from_unit, to_unit):
    with pytest.raises(UnitError) as caught:
        convert(1, from_unit, to_unit)
    assert from_unit in str(caught.value) and to_unit in str(caught.value)


@pytest.mark.parametrize("value, unit", [(-300, "C"), (-1, "K"), (-500, "F")])
def test_below_absolute_zero(value, unit):
    with pytest.raises(UnitError):
        convert(value, unit, "K")


def test_unit_error_is_a_value_error():
    assert issubclass(UnitError, ValueError)
