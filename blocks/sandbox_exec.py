"""Runs one step's command inside the sandbox; the host passes this file to `python3 -c`.

Why a helper rather than a bare `sh -c`:
- the command gets its own process group, whose id is written to PGID_FILE, so a timeout can
  kill the command and everything it started while the container (and the next step) lives on;
- stdin is /dev/null: a command waiting for input gets end-of-file instead of hanging;
- the helper returns as soon as the command's main process exits, even when a background
  process it started still holds stdout open (docker would otherwise wait for that process).
The exit status is the command's own; a command killed by signal N exits with 128 + N.

Usage: python3 -c "$(cat sandbox_exec.py)" PGID_FILE COMMAND
"""

import os
import select
import subprocess
import sys
import time

DRAIN_AFTER_EXIT_S = 0.2  # how long output left in the pipes is still read after the exit


def main(pgid_file: str, command: str) -> int:
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with open(pgid_file, "w") as f:
        f.write(str(proc.pid))
    targets = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    exited_at = None
    while targets:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > DRAIN_AFTER_EXIT_S:
            break
        ready, _, _ = select.select(list(targets), [], [], 0.05)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                os.write(targets[fd], chunk)
            else:
                del targets[fd]
    code = proc.wait()
    try:
        os.unlink(pgid_file)
    except OSError:
        pass
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1], sys.argv[2]))
