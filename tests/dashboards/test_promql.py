"""The PromQL reader behind `rewardscope dashboards --check`: what it extracts and what it reports."""

import pytest

from rewardscope.dashboards.promql import Matcher, PromQLSyntaxError, Selector, check_expression, parse

FILTERS = {"grpo_steps_total": {"job": "$job", "run_id": "$run_id"}, "grpo_step": {"job": "$job", "run_id": "$run_id"},
           "ALERTS": {"run_id": "$run_id"}}
GOOD = 'sum by (run_id) (rate(grpo_steps_total{job=~"$job", run_id=~"$run_id"}[$__rate_interval]))'


def test_parse_extracts_selectors_functions_and_ranges():
    q = parse('histogram_quantile(0.9, sum by (le, run_id) (rate(grpo_step_duration_seconds_bucket{job=~"$job"}'
              '[$__rate_interval]))) or time() - grpo_step offset 5m > bool 1e-9')
    assert q.selectors == (Selector("grpo_step_duration_seconds_bucket", (Matcher("job", "=~", "$job"),)),
                           Selector("grpo_step", ()))
    assert q.functions == ("histogram_quantile", "sum", "rate", "time")
    assert q.ranges == ("$__rate_interval",)
    assert q.metric_names == ("grpo_step_duration_seconds_bucket", "grpo_step")


def test_label_lists_and_strings_are_not_metrics():
    q = parse('max without (instance) (ALERTS{alertstate="firing", run_id=~"a,b}"}) * on (run_id) group_left (model) '
              'grpo_step')
    assert q.metric_names == ("ALERTS", "grpo_step")
    assert q.selectors[0].matchers == (Matcher("alertstate", "=", "firing"), Matcher("run_id", "=~", "a,b}"))


def test_a_sound_expression_has_no_problems():
    assert check_expression(GOOD, FILTERS) == []
    assert check_expression('ALERTS{alertstate="firing", run_id=~"$run_id"}', FILTERS) == []


def test_problems_are_named():
    expr = 'foo(rate(grpo_steps_total{run_id="x"}[5m])) + grpo_kl{job=~"$job", run_id=~"$run_id"} + {job="a"}'
    assert check_expression(expr, FILTERS) == [
        "unknown PromQL function 'foo'",
        "range [5m] must be [$__rate_interval]",
        'grpo_steps_total lacks the filter job=~"$job"',
        'grpo_steps_total lacks the filter run_id=~"$run_id"',
        "unknown metric 'grpo_kl' (not in the rewardscope catalogue)",
        "selector without a metric name",
    ]


def test_unreadable_text_is_a_syntax_error():
    with pytest.raises(PromQLSyntaxError, match="cannot read"):
        parse("grpo_step # comment")
    assert check_expression("grpo_step{job=~$job}", FILTERS)[0].startswith("cannot read label matchers")
