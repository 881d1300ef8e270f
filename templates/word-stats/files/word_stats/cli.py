"""The command line: `python -m word_stats FILE [--top N] [--json]`."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the tool on `argv` (default: sys.argv[1:]) and return the exit code."""
    # TODO(autodev): parse the arguments (--top must be 1 or more), read FILE as UTF-8 with
    # replacement characters, print the table or the JSON; when FILE cannot be read print
    # `word_stats: cannot read FILE: <reason>` on stderr and return 2.
    raise NotImplementedError
