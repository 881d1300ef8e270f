"""The `autodev` command's entry point: hand the command to autodev's warm process
(`autodev/cli/warm/`), or run it here."""

from __future__ import annotations

import os
import sys

from autodev.cli.warm import hand_over


def main() -> None:
    # The temporary server Prefect starts when no PREFECT_API_URL is set would try to send
    # usage telemetry (and log an ERROR for each try on a machine with no internet), and its
    # client announces its own on a terminal when it is imported; autodev sends nothing
    # anywhere unless asked. Set here, before anything imports Prefect, for every process.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    code = hand_over(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from autodev.cli.main import main as run_here

    run_here()
