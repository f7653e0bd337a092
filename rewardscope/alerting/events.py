"""Alert events: what an evaluator emits when an alert starts or stops firing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class AlertState(str, Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertEvent:
    """One transition of one alert instance (an alert name plus its labels)."""

    alertname: str
    state: AlertState
    severity: str
    step: int
    timestamp: float
    labels: dict[str, str] = field(default_factory=dict)  # run_id, reward_fn, ...
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    description: str = ""
    runbook_url: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        return data


def format_alert(event: AlertEvent) -> str:
    """One line for a terminal: state, severity, alert, labels, value, step."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(event.labels.items()))
    value = "" if event.value is None else f" value={event.value:.4g}"
    threshold = "" if event.threshold is None else f" threshold={event.threshold:.4g}"
    return (f"[rewardscope] {event.state.value.upper()} {event.severity} {event.alertname} {{{labels}}} step={event.step}"
            f"{value}{threshold}: {event.summary}")
