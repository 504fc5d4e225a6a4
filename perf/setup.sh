#!/usr/bin/env bash
# Install the peers that perf/run.py measures z6 against:
#   - nginx (the target server) and wrk (the C load generator), from Debian packages (as root);
#   - Locust, into its own venv perf/.venv-locust (it pulls gevent, greenlet, flask...; we keep
#     that out of z6's venv so that z6 is tested with exactly its declared dependencies).
# Idempotent and best effort: a peer that cannot be installed is reported as skipped by run.py.
set -uo pipefail
cd "$(dirname "$0")"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if ! have nginx || ! have wrk; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk \
      >/dev/null) || echo "perf/setup.sh: could not install nginx-light/wrk" >&2
    # Debian starts the packaged nginx on install; run.py starts its own instances.
    if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
  else
    echo "perf/setup.sh: nginx or wrk missing and not root/apt: install them by hand" >&2
  fi
fi

PY=${PYTHON:-python3}
if ! [ -x .venv-locust/bin/locust ]; then
  "$PY" -m venv .venv-locust \
    && .venv-locust/bin/pip install -q --upgrade pip \
    && .venv-locust/bin/pip install -q locust \
    || echo "perf/setup.sh: could not install locust into perf/.venv-locust" >&2
fi

for tool in nginx wrk; do
  if have "$tool"; then echo "perf/setup.sh: $tool ok"; else echo "perf/setup.sh: $tool MISSING"; fi
done
if [ -x .venv-locust/bin/locust ]; then
  echo "perf/setup.sh: locust ok ($(.venv-locust/bin/locust --version 2>&1 | head -1))"
else
  echo "perf/setup.sh: locust MISSING"
fi
