#!/usr/bin/env bash
# Creates .venv and installs rewardscope with the given extras (default: dev), once.
# torch goes in first and pinned to its CPU build where there is no GPU: an unpinned torch
# would pull a multi-gigabyte CUDA build. Re-running is cheap: a stamp file records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
venv="${REWARDSCOPE_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.rewardscope-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "setup: no GPU, installing torch's CPU build (torch==2.13.0)"
        "$venv/bin/python" -m pip install -q torch==2.13.0
    fi
    echo "setup: installing rewardscope[$extras] (a few minutes the first time)"
    "$venv/bin/python" -m pip install -q -e ".[$extras]"
    touch "$stamp"
fi
