"""The replay model server: the most specific stored response answers, unknown requests get 404."""

from __future__ import annotations

import httpx
import pytest

from autodev.blocks.replay import Cassette, ReplayServer, load_cassette
from autodev.core.errors import BadInput

CASSETTE = Cassette.model_validate(
    {
        "responses": [
            {"when": ["implement"], "content": "first"},
            {"when": ["implement", "Evidence"], "json": {"fixed": True}},
        ]
    }
)


def ask(server: ReplayServer, text: str) -> httpx.Response:
    body = {"model": "replay", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{server.api_base}/chat/completions", json=body)


def test_the_most_specific_match_answers_and_unknown_requests_get_404():
    with ReplayServer(CASSETTE) as server:
        assert ask(server, "please implement").json()["choices"][0]["message"]["content"] == "first"
        assert ask(server, "implement, with Evidence").json()["choices"][0]["message"]["content"] == '{"fixed": true}'
        missing = ask(server, "decompose this")
        assert missing.status_code == 404 and "no stored response matches this request: decompose this" in missing.text
        assert server.served == ["please implement", "implement, with Evidence"]


@pytest.mark.parametrize(
    "text, problem",
    [("responses: []", "at least 1"), ("responses:\n  - {when: [a]}", "exactly one of"), ("[", "invalid")],
)
def test_a_bad_cassette_is_bad_input(tmp_path, text, problem):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match=problem):
        load_cassette(path)


def test_the_shipped_cassettes_load():
    from pathlib import Path

    for path in Path("examples/replay").glob("*.yaml"):
        assert load_cassette(path).note  # each says how its responses were made
