#!/usr/bin/env bash
# The main job: a monitored GRPO run on the embedded default (tiny local model on the CPU,
# /metrics on 127.0.0.1:19464, alerts printed, run data in monitoring_data/).
# Extra arguments go to `rewardscope train`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh train,fast
exec .venv/bin/rewardscope train --enable-alerts "$@"
