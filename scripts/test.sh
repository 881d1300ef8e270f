#!/usr/bin/env bash
# Runs autodev's test suite on a Debian machine (as root): installs what the tests need
# (Docker engine, PostgreSQL server binaries, Prometheus, Chromium, the sandbox image, Python deps), then pytest.
# Arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the quick subset.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AUTODEV_EXTRA_PACKAGES="postgresql prometheus chromium ${AUTODEV_EXTRA_PACKAGES:-}"
source "$ROOT/scripts/bootstrap.sh"

stop_dockerd() {
  if [ -n "$AUTODEV_STARTED_DOCKERD" ]; then
    kill "$AUTODEV_STARTED_DOCKERD" 2>/dev/null || true
    wait "$AUTODEV_STARTED_DOCKERD" 2>/dev/null || true
  fi
}
trap stop_dockerd EXIT

cd "$ROOT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
