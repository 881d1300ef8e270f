"""Capturing a command's output: full log file, capped tail, byte count, live lines.

Pure bookkeeping with no Docker or Prefect in it, so the rules (what is kept, how bytes that
are not UTF-8 are shown) are tested directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from autodev.core.redact import Redactor


def decode(data: bytes) -> str:
    """Output is shown as UTF-8; undecodable bytes become U+FFFD, never an error."""
    return data.decode("utf-8", errors="replace")


class OutputCapture:
    """Receives output chunks of one command as they arrive.

    Keeps the last `tail_bytes` bytes, counts every byte, appends everything to `log_path` and
    hands complete lines to `on_lines` until `live_bytes` have been shown (a 20 MB build log
    must not be shipped line by line to the Prefect API; the file has all of it). Secrets the
    `redactor` knows are masked in all three.
    """

    def __init__(
        self,
        tail_bytes: int,
        log_path: Path | None = None,
        on_lines: Callable[[str], None] | None = None,
        live_bytes: int = 1024 * 1024,
        redactor: Redactor | None = None,
    ):
        self.tail_bytes = tail_bytes
        self.redactor = redactor or Redactor()
        self.log_path = log_path
        self.total_bytes = 0
        self._tail = bytearray()
        self._log: BinaryIO | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: what the command printed is on disk at once, for a run resumed after its
            # orchestrator was killed (each chunk is one write).
            self._log = open(log_path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self._on_lines = on_lines
        self._live_left = live_bytes if on_lines else 0
        self._partial = b""
        self._live_cut = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total_bytes += len(chunk)
        if self._log:
            self._log.write(chunk)
        self._tail += chunk
        if len(self._tail) > 2 * self.tail_bytes:  # trim in batches: cheap on floods
            del self._tail[: -self.tail_bytes]
        if self._live_left > 0:
            self._show_lines(chunk)

    def _show_lines(self, chunk: bytes) -> None:
        data = self._partial + chunk
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return
        shown = complete[: self._live_left]
        self._live_left -= len(shown)
        self._on_lines(self.redactor.text(decode(shown)))  # type: ignore[misc]
        if self._live_left <= 0:
            self._live_cut = True

    def close(self) -> None:
        if self._live_left > 0 and self._partial:
            self._on_lines(self.redactor.text(decode(self._partial[: self._live_left])))  # type: ignore[misc]
        if self._live_cut and self._on_lines:
            self._on_lines(
                f"[autodev] live log stops here after {self.total_bytes} bytes; the full output is in the step's log file"
            )
        self._partial = b""
        if self._log:
            self._log.close()
            self._log = None
            if self.redactor:
                self._redact_log()

    def _redact_log(self) -> None:
        assert self.log_path is not None
        redact_file(self.log_path, self.redactor)

    @property
    def tail(self) -> str:
        text = self.redactor.text(decode(bytes(self._tail[-self.tail_bytes:])))
        return text.lstrip("\ufffd") if self.total_bytes > self.tail_bytes else text


def redact_file(path: Path, redactor: Redactor) -> None:
    """Mask the secrets in a log file, in place. Line by line, so a secret split across two
    output chunks is still found."""
    masked = path.with_suffix(".redacting")
    with open(path, "rb") as src, open(masked, "wb") as dst:
        for line in src:
            dst.write(redactor.bytes(line))
    os.replace(masked, path)
