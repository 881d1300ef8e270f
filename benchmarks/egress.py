"""What the egress allow-list costs: the same HTTP requests from a sandbox with the host's network
and from one whose only way out is autodev's proxy (`network: {allow: [...]}`), side by side.

1. Opening the sandbox: with the allow-list, the proxy process and the relay container start too.
2. N sequential requests (a new connection each, as `urllib` makes them) from python3 in the
   sandbox to a loopback HTTP server on the host: the time per request, each way.
Run: .venv/bin/python benchmarks/egress.py [--requests 200] [--rounds 3] 2>/dev/null
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FETCH = (
    "python3 -c \"import time, urllib.request as u\nstart = time.monotonic()\n"
    "for _ in range({n}): u.urlopen('http://127.0.0.1:{port}/', timeout=10).read()\n"
    "print('elapsed', time.monotonic() - start)\""
)


def one_round(requests: int, port: int, allow_list: bool, workdir: Path) -> tuple[float, float]:
    """(seconds to open the sandbox, seconds per request)."""
    from autodev.blocks.sandbox.docker import DockerSandbox
    from autodev.core.commands import CommandRequest
    from autodev.core.egress import PLAN_WIDE, EgressRules
    from autodev.core.settings import load_settings

    egress = EgressRules(hosts={PLAN_WIDE: [f"127.0.0.1:{port}"]}) if allow_list else None
    config = DockerSandbox(image=load_settings().image, network="host", egress=egress)
    began = time.monotonic()
    with config.open(workdir, f"egress-bench-{int(allow_list)}") as sandbox:
        opened = time.monotonic() - began
        out: list[bytes] = []
        result = sandbox.run(CommandRequest(command=FETCH.format(n=requests, port=port), timeout_s=300, stall_timeout_s=60), out.append)
        assert result.status == "succeeded", b"".join(out)[-500:]
    elapsed = float(b"".join(out).split(b"elapsed")[-1])
    return opened, elapsed / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests.test_egress import hello_server

    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with hello_server() as port, tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            for allow_list in (False, True):  # side by side, alternating
                workdir = Path(tmp) / f"ws-{n}-{int(allow_list)}"
                workdir.mkdir()
                figures[allow_list].append(one_round(args.requests, port, allow_list, workdir))
    for allow_list, label in ((False, "host network"), (True, "allow-list proxy")):
        opens = [o for o, _ in figures[allow_list]]
        per = [p * 1000 for _, p in figures[allow_list]]
        print(f"{label:17} open {statistics.median(opens):.2f} s   per request {statistics.median(per):.2f} ms (median of {args.rounds})")
    ratio = statistics.median(p for _, p in figures[True]) / statistics.median(p for _, p in figures[False])
    print(f"per request through the proxy: {ratio:.2f}x the host network ({args.requests} requests, a new connection each)")


if __name__ == "__main__":
    main()
