"""The dashboards are built on grafana-foundation-sdk (the `dashboards` extra, Python 3.11+): without it these
tests are not collected, except under CI, where its absence is an error."""

import importlib.util
import os

if importlib.util.find_spec("grafana_foundation_sdk") is None:
    if os.environ.get("CI"):
        raise RuntimeError("grafana-foundation-sdk is missing: pip install 'rewardscope[dashboards]' (CI must install it)")
    collect_ignore_glob = ["test_*.py"]
