#!/usr/bin/env bash
# The whole test suite. Sets up .venv, installs Debian's prometheus and prometheus-alertmanager
# when they are missing and we are root, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing Debian's prometheus, prometheus-alertmanager and docker-compose"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager docker-compose chromium
    else
        echo "test: promtool/amtool/docker-compose missing and not root: tests that need them will skip" >&2
    fi
fi
./scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
