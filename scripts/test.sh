#!/usr/bin/env bash
# The whole test suite. Sets up .venv, installs Debian's prometheus and prometheus-alertmanager
# when they are missing and we are root, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing Debian's prometheus, prometheus-alertmanager and docker-compose"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager docker-compose chromium openssl
    else
        echo "test: promtool/amtool/docker-compose missing and not root: tests that need them will skip" >&2
    fi
fi
./scripts/setup.sh dev
# The Grafana schema check's npm packages (from the checked-in lockfile), once.
if [ ! -d tests/dashboards/schema/node_modules ]; then
    if command -v npm >/dev/null 2>&1; then
        ./scripts/ci-extra.sh
    else
        echo "test: npm missing: the dashboard schema check will skip (fails under CI)" >&2
    fi
fi
exec .venv/bin/python -m pytest "$@"
