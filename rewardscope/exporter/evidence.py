"""Evidence for alerts: the completions of the step at which an alert fired.

When an alert fires in-process, the evidence sink (``EvidenceSink``, one of the monitor's
sinks when it has a run directory) appends one line to ``<run_dir>/evidence.jsonl`` per
firing event of the step's StepRecord, holding a bounded sample of that step's
completions: the ones with the highest and lowest advantage (the combined reward when the
trainer passed no advantages) and, for a per-function alert (``labels["reward_fn"]``), the
highest and lowest rewards of that function. Each sample keeps the prompt, the completion
text, every function's reward, the advantage and the length (absent values are null).

Bounds: ``per_side`` samples from each end (so at most ``4 * per_side`` per event), texts cut
to ``max_chars`` characters, at most ``max_per_alert`` evidence lines for one alert instance
(alert name plus labels) and ``max_per_run`` lines in the file. Events beyond a cap are
counted in ``skipped`` and logged once. Texts whose count does not match the batch are
dropped (counted in ``dropped_texts``, logged once): the rewards are still kept. A failing
write is the fan-out's business: counted in ``rewardscope_sink_errors_total{sink="evidence"}``,
training goes on.

A run resumed from a checkpoint drops the lines of the steps after it (the run store drops
those steps too), so a step's evidence is never duplicated.

Usage::

    import numpy as np
    from rewardscope.alerting.events import AlertEvent, AlertState
    from rewardscope.exporter.evidence import EvidenceSink, read_evidence

    writer = EvidenceSink("/tmp/run", ["correct"], [1.0])
    event = AlertEvent("GRPOWeakRewardSignal", AlertState.FIRING, "warning", 7, 0.0)
    writer.write(7, [event], np.array([[0.0, 1.0, 1.0, 0.0]]), completions=["a", "b", "c", "d"])
    read_evidence("/tmp/run")[0]["samples"][0]["completion"]       # 'b'
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..alerting.events import AlertEvent, AlertState
from .base import Sink
from .record import StepRecord

log = logging.getLogger("rewardscope")

EVIDENCE_FILE = "evidence.jsonl"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _array_or_none(values: Any, size: int) -> np.ndarray | None:
    """``values`` as a float array of ``size`` entries, or None when absent or unusable."""
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return array if array.size == size else None


def _extremes(key: np.ndarray, count: int) -> tuple[list[int], list[int]]:
    """Indices of the ``count`` highest and ``count`` lowest finite entries of ``key`` (disjoint)."""
    finite = np.flatnonzero(np.isfinite(key))
    order = finite[np.argsort(-key[finite], kind="stable")]
    high = order[:count].tolist()
    low = [i for i in order[::-1][:count].tolist() if i not in high]
    return high, low


class EvidenceSink(Sink):
    """Appends the bounded evidence of each firing alert to ``<run_dir>/evidence.jsonl``."""

    name = "evidence"

    def __init__(self, run_dir: str | os.PathLike, reward_functions: Sequence[str], weights: Sequence[float], *,
                 per_side: int = 2, max_chars: int = 2000, max_per_alert: int = 5, max_per_run: int = 200,
                 resume_after_step: int | None = None) -> None:
        if per_side < 1 or max_chars < 1 or max_per_alert < 1 or max_per_run < 1:
            raise ValueError("per_side, max_chars, max_per_alert and max_per_run must be at least 1")
        self.path = Path(run_dir) / EVIDENCE_FILE
        self.names = list(reward_functions)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.per_side = per_side
        self.max_chars = max_chars
        self.max_per_alert = max_per_alert
        self.max_per_run = max_per_run
        self.skipped = 0
        self.dropped_texts = 0
        self._warned: set[str] = set()
        kept = keep_records(self.path, resume_after_step, is_evidence_record)
        self.lines = len(kept)
        self._per_alert: dict[tuple, int] = {}
        for record in kept:
            key = _alert_key(record["alertname"], record.get("labels") or {})
            self._per_alert[key] = self._per_alert.get(key, 0) + 1

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, *args)

    def _texts(self, texts: Sequence[str] | None, size: int, what: str) -> Sequence[str] | None:
        if texts is None:
            return None
        if isinstance(texts, (str, bytes)) or len(texts) != size or not all(isinstance(t, str) for t in texts):
            self.dropped_texts += 1
            self._warn_once(what, "rewardscope evidence: %s are not %d strings (one per sample); kept the rewards only", what, size)
            return None
        return texts

    def write_step(self, record: StepRecord) -> None:
        if record.events and record.batch_rewards is not None:
            self.write(record.step, record.events, record.batch_rewards, advantages=record.advantages,
                       completion_lengths=record.completion_lengths, prompts=record.prompts, completions=record.completions)

    def write(self, step: int, events: Sequence[AlertEvent], rewards: np.ndarray, *, advantages: Any = None,
              completion_lengths: Any = None, prompts: Sequence[str] | None = None,
              completions: Sequence[str] | None = None) -> int:
        """Append the evidence of every firing event of this step; return the lines written."""
        firing = [e for e in events if e.state is AlertState.FIRING]
        if not firing:
            return 0
        rewards = np.asarray(rewards, dtype=np.float64)
        n = rewards.shape[1]
        advantage = _array_or_none(advantages, n)
        lengths = _array_or_none(completion_lengths, n)
        prompts = self._texts(prompts, n, "prompts")
        completions = self._texts(completions, n, "completions")
        total = np.nansum(rewards * self.weights[:, None], axis=0)
        lines: list[str] = []
        for event in firing:
            key = _alert_key(event.alertname, event.labels)
            if self.lines + len(lines) >= self.max_per_run or self._per_alert.get(key, 0) >= self.max_per_alert:
                self.skipped += 1
                self._warn_once("cap", "rewardscope evidence: cap reached (%d per alert, %d per run); later alerts keep no "
                                "completions", self.max_per_alert, self.max_per_run)
                continue
            self._per_alert[key] = self._per_alert.get(key, 0) + 1
            samples = self._samples(event, rewards, total, advantage, lengths, prompts, completions)
            record = {"step": int(step), "alertname": event.alertname, "severity": event.severity, "labels": dict(event.labels),
                      "value": event.value, "threshold": event.threshold, "summary": event.summary, "samples": samples}
            lines.append(json.dumps(record, allow_nan=False, default=_plain) + "\n")
        if lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(lines)
            self.lines += len(lines)
        return len(lines)

    def _samples(self, event: AlertEvent, rewards: np.ndarray, total: np.ndarray, advantage: np.ndarray | None,
                 lengths: np.ndarray | None, prompts: Sequence[str] | None, completions: Sequence[str] | None) -> list[dict]:
        choices: list[tuple[str, int]] = []
        key, by = (advantage, "advantage") if advantage is not None else (total, "combined reward")
        high, low = _extremes(key, self.per_side)
        choices += [(f"highest {by}", i) for i in high] + [(f"lowest {by}", i) for i in low]
        fn = event.labels.get("reward_fn")
        if fn in self.names:
            high, low = _extremes(rewards[self.names.index(fn)], self.per_side)
            choices += [(f"highest {fn}", i) for i in high] + [(f"lowest {fn}", i) for i in low]
        samples = []
        for reason, index in choices:
            samples.append({
                "reason": reason,
                "index": index,
                "prompt": None if prompts is None else prompts[index][-self.max_chars:],
                "completion": None if completions is None else completions[index][:self.max_chars],
                "rewards": {name: _finite(float(rewards[row, index])) for row, name in enumerate(self.names)},
                "combined_reward": _finite(float(total[index])),
                "advantage": None if advantage is None else _finite(float(advantage[index])),
                "length": None if lengths is None else _finite(float(lengths[index])),
            })
        return samples


def _alert_key(alertname: str, labels: dict) -> tuple:
    return (alertname, tuple(sorted((k, str(v)) for k, v in labels.items())))


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_evidence_record(record: Any) -> bool:
    return isinstance(record, dict) and "alertname" in record and isinstance(record.get("step"), int)


def whole_records(path: Path, text: str, is_record: Callable[[Any], bool]) -> Iterator[tuple[int, dict]]:
    """(line number, record) of every line of ``text`` that ``is_record``; other lines are warned about and left out."""
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not is_record(record):
            log.warning("%s:%d: skipped a line that is not a whole record (a torn final line from an interrupted "
                        "writer?)", path, number)
            continue
        yield number, record


def keep_records(path: Path, resume_after_step: int | None, is_record: Callable[[Any], bool]) -> list[dict]:
    """The whole records of an existing JSONL file; rewrites it without a torn tail or steps after ``resume_after_step``.

    Shared by the evidence and probe files: each passes the test a line must pass to be one of its records
    (a record has an integer ``step``).
    """
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    records = [r for _, r in whole_records(path, text, is_record)
               if resume_after_step is None or r["step"] <= resume_after_step]
    if len(records) != lines or (text and not text.endswith("\n")):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, path)
    return records


def read_evidence(run_dir: str | os.PathLike) -> list[dict]:
    """Every whole evidence record of a run, each with its ``line`` number in the file (1-based); [] when none."""
    path = Path(run_dir) / EVIDENCE_FILE
    if not path.exists():
        return []
    return [{**record, "line": number} for number, record in whole_records(path, path.read_text(encoding="utf-8"),
                                                                                  is_evidence_record)]


def evidence_index(run_dir: str | os.PathLike) -> list[dict]:
    """Where each alert's evidence is: {"file", "line", "alertname", "step", "samples"} per record (for ``rewardscope summary``)."""
    path = Path(run_dir) / EVIDENCE_FILE
    return [{"file": str(path), "line": r["line"], "alertname": r["alertname"], "step": r["step"],
             "samples": len(r.get("samples") or [])} for r in read_evidence(run_dir)]
