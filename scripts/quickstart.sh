#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine (as root): install what is missing (Docker
# engine included), build the sandbox image, start a local Prefect server, run the sample plan
# and say where to look in the Prefect UI. Safe to run again.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
PLAN=${1:-examples/hello-python.yaml}
STARTED_PREFECT=""

healthy() { "$ROOT/.venv/bin/python" - "$1" <<'PY'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

if [ -z "${PREFECT_API_URL:-}" ]; then
  export PREFECT_API_URL=http://127.0.0.1:4200/api
  if ! healthy "$PREFECT_API_URL"; then
    say "starting a local Prefect server on 127.0.0.1:4200 (log: .autodev-run/prefect-server.log)"
    "$ROOT/.venv/bin/prefect" server start --host 127.0.0.1 --port 4200 >"$RUN_DIR/prefect-server.log" 2>&1 &
    echo $! >"$RUN_DIR/prefect-server.pid"
    STARTED_PREFECT=$!
    for _ in $(seq 1 120); do healthy "$PREFECT_API_URL" && break; sleep 0.5; done
    healthy "$PREFECT_API_URL" || { tail -20 "$RUN_DIR/prefect-server.log" >&2; say "Prefect server did not start"; exit 4; }
  fi
fi

"$ROOT/.venv/bin/autodev" doctor
say "running $PLAN"
set +e
"$ROOT/.venv/bin/autodev" exec "$PLAN"
status=$?
set -e
cat >&2 <<MSG

[autodev] Prefect UI: ${PREFECT_API_URL%/api} -> Runs: the flow run "autodev-plan", one task run per step,
          each with its command's output in the logs and the run summary under Artifacts.
[autodev] Again, or another plan:   .venv/bin/autodev exec PLAN.yaml   (PREFECT_API_URL=$PREFECT_API_URL)
MSG
for started in "Prefect server:$STARTED_PREFECT" "Docker engine:$AUTODEV_STARTED_DOCKERD"; do
  [ -n "${started#*:}" ] && say "started here, still running: ${started%%:*} (stop it with: kill ${started#*:})"
done
exit $status
