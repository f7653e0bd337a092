"""Grafana dashboards as code: typed panels over catalogue metrics, rendered to JSON.

``definitions`` holds the dashboards, ``model`` the panel types and the JSON
rendering, ``writer`` the deterministic files, ``check`` the lint and staleness
check, ``cli`` the ``rewardscope dashboards [--check]`` command.

Usage::

    from rewardscope.dashboards import DASHBOARDS, check, write_dashboards
    write_dashboards("grafana/dashboards")
    assert check("grafana/dashboards") == []
"""

from .check import check
from .definitions import DASHBOARDS
from .writer import write_dashboards

__all__ = ["DASHBOARDS", "check", "write_dashboards"]
