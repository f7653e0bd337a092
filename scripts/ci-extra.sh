#!/usr/bin/env bash
# Extra CI steps of the alerting and stack tests (for .ci/run, before the test command):
# the npm packages of the Grafana schema check (tests/dashboards/test_grafana_typescript_schema.py),
# installed from the checked-in lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund --prefix tests/dashboards/schema
