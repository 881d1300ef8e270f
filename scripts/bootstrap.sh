#!/usr/bin/env bash
# Installs what autodev needs on a Debian machine (as root) and is safe to run again:
# Debian packages, the Python environment in .venv, a running Docker engine, the sandbox image.
# Sourced by quickstart.sh and test.sh; `AUTODEV_STARTED_DOCKERD` tells them whether it started dockerd.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR="$ROOT/.autodev-run"   # logs and pids of the services these scripts start
mkdir -p "$RUN_DIR"
say() { printf '\033[1m[autodev]\033[0m %s\n' "$*" >&2; }

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in ${AUTODEV_EXTRA_PACKAGES:-}; do pkg_installed "$pkg" || need_pkgs+=("$pkg"); done
have dockerd || need_pkgs+=(docker.io)
have mmdebstrap || need_pkgs+=(mmdebstrap)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then say "please install as root: apt-get install -y ${need_pkgs[*]}"; exit 4; fi
  say "installing Debian packages: ${need_pkgs[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >"$RUN_DIR/apt.log" 2>&1 \
    || { tail -20 "$RUN_DIR/apt.log" >&2; exit 4; }
fi

# Python environment: locked dependencies, then autodev itself (editable).
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  say "creating .venv"
  python3 -m venv "$ROOT/.venv"
fi
if ! cmp -s "$ROOT/requirements.lock" "$ROOT/.venv/.installed.lock" 2>/dev/null; then
  say "installing Python dependencies (requirements.lock)"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.lock" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$ROOT/.venv/bin/python" -c 'import autodev, prefect, docker, psycopg' || { say "Python install failed"; exit 4; }
  cp "$ROOT/requirements.lock" "$ROOT/.venv/.installed.lock"
fi

# Docker engine: use the one that answers; else start dockerd (sandboxes need no bridge network).
export AUTODEV_STARTED_DOCKERD=""
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: .autodev-run/dockerd.log)"
  dockerd --bridge=none --iptables=false --ip6tables=false >"$RUN_DIR/dockerd.log" 2>&1 &
  echo $! >"$RUN_DIR/dockerd.pid"
  AUTODEV_STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$RUN_DIR/dockerd.log" >&2; say "dockerd did not start"; exit 4; }
fi

# The sandbox image.
IMAGE=${AUTODEV_IMAGE:-autodev-sandbox:latest}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "building the sandbox image $IMAGE"
  "$ROOT/.venv/bin/autodev" image build --tag "$IMAGE"
fi
