"""Dashboard JSON files: deterministic text, written to or compared with a directory.

The text is ``json.dumps(..., indent=2, sort_keys=True)`` of the rendered model plus
a final newline, so the same definitions always give the same bytes and a diff of a
checked-in file shows only real changes.

Usage::

    from rewardscope.dashboards.writer import write_dashboards
    write_dashboards("grafana/dashboards")     # -> [Path('grafana/dashboards/rewardscope-overview.json'), ...]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .definitions import DASHBOARDS
from .model import Dashboard, render_dashboard


def render_json(board: Dashboard) -> str:
    """The file text of one dashboard."""
    return json.dumps(render_dashboard(board), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files(dashboards: Sequence[Dashboard] = DASHBOARDS) -> dict[str, str]:
    """File name -> text of every dashboard."""
    return {board.filename: render_json(board) for board in dashboards}


def write_dashboards(directory: str | Path, dashboards: Sequence[Dashboard] = DASHBOARDS) -> list[Path]:
    """Write every dashboard into ``directory`` (which must exist); returns the paths written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory: run from the repository root or pass --out")
    written = []
    for name, text in rendered_files(dashboards).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
