"""Runs one step's command inside the sandbox; the host passes this file to `python3 -I -S -c`.

Why a helper rather than a bare `sh -c`:
- the command gets its own process group, whose id is written to PGID_FILE, so a timeout can
  kill the command and everything it started while the container (and the next step) lives on;
- stdin is /dev/null: a command waiting for input gets end-of-file instead of hanging;
- stdout and stderr share one pipe, so the captured output keeps the order of writing, as a
  terminal would show it (an error message stays next to what led to it);
- the helper returns as soon as the command's main process exits, even when a background
  process it started still holds stdout open (Docker would keep the exec open for seconds).
The exit status is the command's own; a command killed by signal N exits with 128 + N.
Only built-in modules (os, select, signal, sys, time) are imported: the helper starts on every step.

Usage: python3 -I -S -c "$(cat sandbox_exec.py)" PGID_FILE COMMAND
"""

import os
import select
import signal
import sys
import time

DRAIN_AFTER_EXIT_S = 0.2  # how long output left in the pipe is still read after the exit


def spawn(command):
    """Start /bin/sh -c COMMAND in a new session; return (pid, read end of its output)."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            # Python ignores SIGPIPE; a shell pipeline (`yes | head`) needs the default back.
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            for fd in (null, out_r, out_w):
                os.close(fd)
            os.execv("/bin/sh", ["/bin/sh", "-c", command])
        finally:
            os._exit(127)
    os.close(out_w)
    return pid, out_r


def main(pgid_file, command):
    pid, out_r = spawn(command)
    with open(pgid_file, "w") as f:
        f.write(str(pid))
    status = None
    exited_at = None
    while True:
        if status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status, exited_at = code, time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > DRAIN_AFTER_EXIT_S:
            break
        ready, _, _ = select.select([out_r], [], [], 0.05)
        if ready:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            os.write(1, chunk)
    if status is None:
        status = os.waitpid(pid, 0)[1]
    try:
        os.unlink(pgid_file)
    except OSError:
        pass
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    os._exit(main(sys.argv[1], sys.argv[2]))
