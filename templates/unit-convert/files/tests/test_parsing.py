import pytest

from unit_convert import UnitError, parse_quantity


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12.5 km", (12.5, "km")),
        (" -40F ", (-40.0, "F")),
        ("3ft", (3.0, "ft")),
        ("+0.5   mi", (0.5, "mi")),
        ("273.15 K", (273.15, "K")),
    ],
)
def test_quantities(text, expected):
    value, unit = parse_quantity(text)
    assert (value, unit) == expected and isinstance(value, float)


@pytest.mark.parametrize("text", ["", "   ", "km", "12.5", "12.5 yd", "twelve km", "1.2.3 m", "12 km extra", "1e3 m", "12 KM"])
def test_anything_else_raises_naming_the_text(text):
    with pytest.raises(UnitError) as caught:
        parse_quantity(text)
    assert text.strip() in str(caught.value)
