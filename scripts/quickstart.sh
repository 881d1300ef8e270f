#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine (as root): install what is missing (Docker
# engine included), build the sandbox image, start a local Prefect server, develop the Weather
# Bot from its requirements (decompose, scaffold, agent step, tests, one feedback round) and say
# where to look in the Prefect UI. Safe to run again.
#
# With no AUTODEV_LLM_MODEL set, the model's answers are stored responses replayed by a local
# server (examples/replay/weather-bot.yaml): offline, no API key. With it set, the real model
# works. `bash scripts/quickstart.sh PLAN.yaml` runs an explicit plan instead.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
TARGET=${1:-docs/weather_bot_requirements.md}
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
set +e
case "$TARGET" in
  *.md)
    if [ -n "${AUTODEV_LLM_MODEL:-}" ]; then
      say "developing $TARGET with the model $AUTODEV_LLM_MODEL"
      "$ROOT/.venv/bin/autodev" run "$TARGET" --yes
    else
      say "developing $TARGET offline: AUTODEV_LLM_MODEL is unset, so the model's answers are"
      say "stored responses (examples/replay/weather-bot.yaml) replayed by a local server, not a live model"
      "$ROOT/.venv/bin/autodev" run "$TARGET" --replay examples/replay/weather-bot.yaml
    fi ;;
  *)
    say "running $TARGET"
    "$ROOT/.venv/bin/autodev" exec "$TARGET" ;;
esac
status=$?
set -e
cat >&2 <<MSG

[autodev] Prefect UI: ${PREFECT_API_URL%/api} -> Runs: "autodev-develop" with its plan artifact, and inside it the
          flow run "autodev-plan": one task run per step, each step's output in its logs, and the
          run summary, insights and evaluation under Artifacts.
[autodev] Report of every recorded run:   .venv/bin/autodev report   (writes docs/orchestrator_ai_development_test_report.md)
[autodev] Another plan or requirements:   .venv/bin/autodev exec PLAN.yaml | .venv/bin/autodev run REQUIREMENTS.md
MSG
for started in "Prefect server:$STARTED_PREFECT" "Docker engine:$AUTODEV_STARTED_DOCKERD"; do
  [ -n "${started#*:}" ] && say "started here, still running: ${started%%:*} (stop it with: kill ${started#*:})"
done
exit $status
