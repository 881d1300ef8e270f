from unit_convert.__main__ import main


def test_prints_the_conversion(capsys):
    assert main(["12.5 km", "mi"]) == 0
    assert capsys.readouterr().out == "12.5 km = 7.76714 mi\n"


def test_bad_input_exits_2(capsys):
    assert main(["12.5 km", "C"]) == 2
    assert capsys.readouterr().err.startswith("unit_convert: ")
    assert main(["12.5"]) == 2
