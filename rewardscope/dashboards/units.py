"""Grafana units for catalogue metrics, and which unit ids Grafana knows.

Every panel shows a unit. By default it derives from the catalogue's unit of the
panel's first metric (``grafana_unit``), so a ratio is drawn as a percentage and a
duration in seconds everywhere. ``is_known_unit`` accepts Grafana's built-in unit
ids (a subset of packages/grafana-data/src/valueFormats/categories.ts: the ones a
training dashboard can sensibly use) and the custom forms its ``getValueFormat``
parses: ``suffix:<text>`` and ``count:<text>`` (an SI-scaled count with a unit).
Grafana renders any other string literally, so a typo would not fail there: it
fails here.

Usage::

    from rewardscope.dashboards.units import grafana_unit, is_known_unit
    grafana_unit("ratio")             # 'percentunit'
    is_known_unit("suffix: nats")     # True
"""

from __future__ import annotations

from ..metrics.catalogue import CATALOGUE

BUILTIN_UNITS = frozenset({
    # Misc
    "none", "string", "short", "percent", "percentunit", "sci", "locale",
    # Time
    "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms", "clockms", "clocks",
    # Date & time
    "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeFromNow",
    # Throughput
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
    # Data
    "bytes", "decbytes", "bits", "decbits",
})
CUSTOM_UNIT_PREFIXES = ("suffix:", "count:")

# Catalogue unit -> Grafana unit. A test fails when the catalogue gains a unit not listed here.
CATALOGUE_UNITS: dict[str, str] = {
    "": "none",
    "steps": "none",
    "seconds": "s",
    "completions": "none",
    "samples": "short",
    "tokens": "suffix: tokens",
    "reward": "none",
    "reward^2": "none",
    "ratio": "percentunit",
    "nats": "suffix: nats",
    "advantage": "none",
    "norm": "none",
    "loss": "none",
    "rate": "sci",
    "unit/step": "none",
    "bool": "none",
    "alerts": "short",
    "errors": "short",
    "scrapes": "short",
}

def is_known_unit(unit: str) -> bool:
    """True for a built-in Grafana unit id or a ``suffix:``/``count:`` custom unit."""
    if unit in BUILTIN_UNITS:
        return True
    return any(unit.startswith(prefix) and len(unit) > len(prefix) for prefix in CUSTOM_UNIT_PREFIXES)


def grafana_unit(catalogue_unit: str) -> str:
    """The Grafana unit for a catalogue unit; KeyError names a unit nobody mapped yet."""
    try:
        return CATALOGUE_UNITS[catalogue_unit]
    except KeyError:
        raise KeyError(f"catalogue unit {catalogue_unit!r} has no Grafana unit in rewardscope.dashboards.units") from None


def unmapped_catalogue_units() -> list[str]:
    """Catalogue units without a Grafana unit (should be empty)."""
    return sorted({spec.unit for spec in CATALOGUE} - set(CATALOGUE_UNITS))
