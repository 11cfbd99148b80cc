#!/usr/bin/env bash
# Python clients against $AMQP_URL (interop/README.md): pika's scenarios, then celery's (a real
# Celery worker, kombu underneath), then amqpstorm's, rabbitpy's and aio-pika's
# (compat_scenarios.py), then the management HTTP API through requests (http_scenarios.py, when
# MANAGEMENT_URL is set). Prints one summary line per library: `pika: …`, `celery: …`,
# `amqpstorm: …`, `rabbitpy: …`, `aio-pika: …`, `requests: …`.
# Installs requirements.txt (every package pinned) from PyPI into a venv under target/.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
: "${AMQP_URL:?AMQP_URL must be set}"
CACHE="${INTEROP_CACHE:-$HERE/../../target/interop}/python"
VENV="$CACHE/venv"
STAMP="$VENV/.requirements.txt"
if ! cmp -s "$HERE/requirements.txt" "$STAMP"; then
    echo "installing $HERE/requirements.txt into $VENV" >&2
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            -r "$HERE/requirements.txt"; } >&2; then
        echo "FAIL install: pip install -r requirements.txt failed"
        echo "pika: 0 passed, 1 failed"
        echo "celery: 0 passed, 1 failed"
        echo "amqpstorm: 0 passed, 1 failed"
        echo "rabbitpy: 0 passed, 1 failed"
        echo "aio-pika: 0 passed, 1 failed"
        echo "requests: 0 passed, 1 failed"
        exit 1
    fi
    cp "$HERE/requirements.txt" "$STAMP"
fi
cd "$HERE"
status=0
"$VENV/bin/python" -u pika_scenarios.py || status=1
"$VENV/bin/python" -u celery_scenarios.py || status=1
"$VENV/bin/python" -u compat_scenarios.py || status=1
if [ -n "${MANAGEMENT_URL:-}" ]; then
    "$VENV/bin/python" -u http_scenarios.py || status=1
else
    echo "SKIP requests: no MANAGEMENT_URL (the broker's HTTP API)"
    echo "requests: 0 passed, 0 failed"
fi
exit $status
