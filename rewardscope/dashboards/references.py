"""Which series a dashboard query may name, what each means, how it must be filtered.

Dashboards name catalogue metrics (every sample name of ``exposed_sample_names()``,
so ``grpo_reward_fn_value_bucket`` too) and, as the one exception, Prometheus' own
``ALERTS`` series, which Prometheus writes for every pending or firing rule (the
rules compiled from ``alerting/`` carry ``run_id``). Each reference comes with the
help text that becomes part of the panel's description and the label filters every
selector of it must carry.

Usage::

    from rewardscope.dashboards.references import reference
    ref = reference("grpo_reward_fn_value_bucket")
    ref.metric, ref.filters      # 'grpo_reward_fn_value', {'job': '$job', 'run_id': '$run_id'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..metrics.catalogue import CATALOGUE, exposed_sample_names

RUN_FILTERS: Mapping[str, str] = MappingProxyType({"job": "$job", "run_id": "$run_id"})

# Prometheus' own series. ALERTS keeps the labels of the rule's result, so run_id,
# but not necessarily job (a rule may aggregate it away).
PROMETHEUS_SERIES: Mapping[str, str] = MappingProxyType({
    "ALERTS": "Prometheus' series of alert rules that are pending or firing (alertstate label), with the labels of the "
              "rule's result; rewardscope's compiled rules keep run_id and reward_fn.",
})


@dataclass(frozen=True)
class Reference:
    """A series a dashboard may name: its sample name, the metric it belongs to, its help, its filters."""

    sample: str
    metric: str
    help: str
    unit: str
    filters: Mapping[str, str]


def _build() -> dict[str, Reference]:
    refs: dict[str, Reference] = {}
    for spec in CATALOGUE:
        for sample in spec.exposed_names():
            refs[sample] = Reference(sample, spec.name, spec.help, spec.unit, RUN_FILTERS)
    for name, help_text in PROMETHEUS_SERIES.items():
        refs[name] = Reference(name, name, help_text, "", MappingProxyType({"run_id": "$run_id"}))
    assert set(refs) == set(exposed_sample_names()) | set(PROMETHEUS_SERIES)
    return refs


REFERENCES: Mapping[str, Reference] = MappingProxyType(_build())


def reference(sample: str) -> Reference:
    """The reference for a sample name; KeyError names an unknown one."""
    try:
        return REFERENCES[sample]
    except KeyError:
        raise KeyError(f"{sample!r} is neither a rewardscope catalogue sample nor a Prometheus series dashboards may use") from None


def required_filters() -> dict[str, Mapping[str, str]]:
    """Sample name -> label filters every selector of it needs (for promql.check_expression)."""
    return {name: ref.filters for name, ref in REFERENCES.items()}
