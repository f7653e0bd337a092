"""Just enough PromQL reading to lint dashboard queries: selectors, functions, ranges.

A dashboard query must name catalogue metrics only, filter every series by the
selected run, and give every range vector ``[$__rate_interval]`` so Grafana picks a
window of at least four scrapes. ``parse`` splits an expression into the vector
selectors (metric name plus label matchers), the functions it calls and the
contents of its range brackets; ``check_expression`` turns those into messages.

This is a tokenizer, not a full parser: it understands what our dashboards write
(selectors, function calls, aggregations with ``by``/``without``, binary operators,
``on``/``ignoring``/``group_left``) and rejects nothing it does not understand
silently — an unknown function name is reported as such.

Usage::

    from rewardscope.dashboards.promql import parse
    q = parse('sum by (run_id) (rate(grpo_steps_total{run_id=~"$run_id"}[$__rate_interval]))')
    [s.name for s in q.selectors], q.functions, q.ranges
    # (['grpo_steps_total'], ('sum', 'rate'), ('$__rate_interval',))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

RATE_INTERVAL = "$__rate_interval"

# PromQL functions and aggregation operators (Prometheus 2.42, the version the tests run).
AGGREGATIONS = frozenset(["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"])
FUNCTIONS = AGGREGATIONS | frozenset(["abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log10", "log2", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time"])

# Words that are neither metrics nor functions.
KEYWORDS = frozenset(["and", "or", "unless", "bool", "offset", "inf", "nan"])
# Followed by a parenthesised list of label names, not an expression.
LABEL_LIST_KEYWORDS = frozenset(["by", "without", "on", "ignoring", "group_left", "group_right"])

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<braces>\{(?:[^}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})
  | (?P<range>\[[^\]]*\])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[a-z]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>(),@])
""", re.VERBOSE)

_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)""")


class PromQLSyntaxError(ValueError):
    """The expression contains text this reader cannot tokenize."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    """One vector selector: ``name{matchers}``; name is None for a bare ``{...}``."""

    name: str | None
    matchers: tuple[Matcher, ...]

    def matcher(self, label: str) -> Matcher | None:
        return next((m for m in self.matchers if m.label == label), None)


@dataclass(frozen=True)
class Query:
    """What one expression references, in order of appearance."""

    selectors: tuple[Selector, ...]
    functions: tuple[str, ...]
    ranges: tuple[str, ...]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.selectors if s.name is not None)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLSyntaxError(f"cannot read {expr[pos:pos + 20]!r} at offset {pos} of {expr!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _matchers(braces: str) -> tuple[Matcher, ...]:
    body = braces[1:-1].strip()
    found, pos = [], 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise PromQLSyntaxError(f"cannot read label matchers {braces!r}")
        found.append(Matcher(m.group(1), m.group(2), m.group(3)))
        pos = m.end()
    return tuple(found)


def parse(expr: str) -> Query:
    """Selectors, function calls and range contents of ``expr`` (see the module docstring)."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    functions: list[str] = []
    ranges: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in LABEL_LIST_KEYWORDS:
            if nxt[1] == "(":  # skip the label list up to its closing parenthesis
                i += 2
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
            i += 1
            continue
        if kind == "ident" and text in KEYWORDS:
            i += 1
            continue
        if kind == "ident" and (nxt[1] == "(" or (text in AGGREGATIONS and nxt[1] in ("by", "without"))):
            functions.append(text)
            i += 1
            continue
        if kind == "ident":
            if nxt[0] == "braces":
                selectors.append(Selector(text, _matchers(nxt[1])))
                i += 2
            else:
                selectors.append(Selector(text, ()))
                i += 1
            continue
        if kind == "braces":
            selectors.append(Selector(None, _matchers(text)))
        elif kind == "range":
            ranges.append(text[1:-1].strip())
        i += 1
    return Query(tuple(selectors), tuple(functions), tuple(ranges))


def check_expression(expr: str, required_filters: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Problems of one dashboard expression; empty when it is fine.

    ``required_filters`` maps every metric a dashboard may name to the label filters
    each of its selectors must carry, e.g. ``{"grpo_kl": {"run_id": "$run_id"}}``
    (``label=~"value"`` exactly): a query that forgets the run filter would silently
    mix every run together. A metric missing from the mapping is unknown.
    """
    try:
        query = parse(expr)
    except PromQLSyntaxError as error:
        return [str(error)]
    problems = []
    for name in query.functions:
        if name not in FUNCTIONS:
            problems.append(f"unknown PromQL function {name!r}")
    for rng in query.ranges:
        if rng != RATE_INTERVAL:
            problems.append(f"range [{rng}] must be [{RATE_INTERVAL}]")
    if not query.selectors:
        problems.append("no metric selector")
    for selector in query.selectors:
        if selector.name is None:
            problems.append("selector without a metric name")
            continue
        if selector.name not in required_filters:
            problems.append(f"unknown metric {selector.name!r} (not in the rewardscope catalogue)")
            continue
        for label, value in required_filters[selector.name].items():
            found = selector.matcher(label)
            if found is None or found.op != "=~" or found.value != value:
                problems.append(f'{selector.name} lacks the filter {label}=~"{value}"')
    return problems
