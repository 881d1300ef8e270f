import json
import subprocess
import sys
from pathlib import Path

import pytest

from word_stats.cli import main

TEXT = "the quick fox. The quick dog and the fox\nthe end of the fox\n"


def write(tmp_path, data, name="text.txt"):
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_table_shows_the_totals_and_the_top_words(tmp_path, capsys):
    assert main([str(write(tmp_path, TEXT)), "--top", "3"]) == 0
    assert capsys.readouterr().out == "14 words, 7 distinct\nthe    5\nfox    3\nquick  2\n"


def test_ten_words_by_default(tmp_path, capsys):
    words = " ".join(f"w{i}" for i in range(12))
    assert main([str(write(tmp_path, words))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "12 words, 12 distinct" and len(lines) == 11


def test_json(tmp_path, capsys):
    assert main([str(write(tmp_path, TEXT)), "--json", "--top", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "total": 14, "distinct": 7, "top": [{"word": "the", "count": 5}, {"word": "fox", "count": 3}],
    }


def test_an_empty_file(tmp_path, capsys):
    assert main([str(write(tmp_path, ""))]) == 0
    assert capsys.readouterr().out == "0 words, 0 distinct\n"


def test_a_missing_file_exits_2_with_the_reason(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main([str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"word_stats: cannot read {missing}: ")


def test_bytes_that_are_not_utf8_do_not_crash(tmp_path, capsys):
    assert main([str(write(tmp_path, b"caf\xe9 caf\xe9 ok\n")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"] == [{"word": "caf", "count": 2}, {"word": "ok", "count": 1}]


@pytest.mark.parametrize("top", ["0", "-3", "many"])
def test_top_must_be_one_or_more(tmp_path, top):
    with pytest.raises(SystemExit) as exited:
        main([str(write(tmp_path, TEXT)), "--top", top])
    assert exited.value.code == 2


def test_runs_as_a_module(tmp_path):
    project = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "word_stats", str(tmp_path / "nope.txt")], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 2 and "word_stats: cannot read" in done.stderr
