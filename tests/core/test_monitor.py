"""RewardMonitor end to end in-process: bad input, counters, memory bounds, sinks."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from rewardscope import RewardFunctionSpec, RewardMonitor, StepInputError
from rewardscope.alerting.events import AlertEvent

SPECS = [RewardFunctionSpec("a", 1.0, 0.0, 1.0), RewardFunctionSpec("b", 1.0, 0.0, 2.0)]


def monitor(**kwargs):
    kwargs.setdefault("run_dir", None)
    kwargs.setdefault("group_size", 2)
    return RewardMonitor("run", SPECS, registry=kwargs.pop("registry", CollectorRegistry()), **kwargs)


def good(n=4):
    return {"a": np.ones(n), "b": np.zeros(n)}


def skipped(m, reason):
    return m.registry.get_sample_value("grpo_skipped_steps_total", {"run_id": "run", "reason": reason}) or 0.0


BAD_INPUTS = [
    ("step_not_increasing", 1, good()),
    ("step_not_increasing", 0, good()),
    ("empty_batch", 5, {"a": [], "b": []}),
    ("length_mismatch", 5, {"a": [1.0, 1.0], "b": [1.0]}),
    ("group_size_mismatch", 5, {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}),
    ("unknown_function", 5, {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]}),
    ("missing_function", 5, {"a": [1.0, 1.0]}),
    ("missing_function", 5, {"a": [1.0, 1.0], "b": None}),
    ("not_numeric", 5, {"a": ["x", "y"], "b": [1.0, 1.0]}),
    ("not_numeric", 5, {"a": [[1.0, 1.0]], "b": [1.0, 1.0]}),
    ("not_numeric", 5.5, good()),
    ("not_numeric", True, good()),
]


@pytest.mark.parametrize("reason, step, rewards", BAD_INPUTS)
def test_bad_input_is_a_counted_skip(reason, step, rewards, caplog):
    with monitor() as m:
        m.record_step(1, good())
        assert m.record_step(step, rewards) is None
        assert skipped(m, reason) == 1.0
        assert m.registry.get_sample_value("grpo_steps_total", {"run_id": "run"}) == 1.0
        assert reason in caplog.text
        assert m.record_step(2, good()) is not None  # the monitor goes on


@pytest.mark.parametrize("reason, step, rewards", BAD_INPUTS)
def test_bad_input_raises_when_asked(reason, step, rewards):
    with monitor(on_bad_input="raise") as m:
        m.record_step(1, good())
        with pytest.raises(StepInputError) as error:
            m.record_step(step, rewards)
        assert error.value.reason == reason


def test_nonfinite_training_scalars_are_dropped_and_logged(caplog):
    with monitor() as m:
        metrics = m.record_step(1, good(), kl=float("nan"), policy_entropy=1.5, loss=float("inf"))
    assert metrics.value("grpo_kl") is None and metrics.value("grpo_loss") is None
    assert metrics.value("grpo_policy_entropy") == 1.5
    assert "dropped non-finite kl, loss" in caplog.text


def test_training_inputs_become_metrics():
    with monitor(max_completion_length=32) as m:
        metrics = m.record_step(1, good(), advantages=[1.0, -1.0, 3.0, -3.0], completion_lengths=[10, 32, 32, 20],
                                clip_ratio=0.1, grad_norm=2.0, learning_rate=1e-6, tokens=400)
        assert m.registry.get_sample_value("grpo_tokens_total", {"run_id": "run"}) == 400.0
    assert metrics.value("grpo_advantage_mean") == 0.0
    assert metrics.value("grpo_advantage_std") == pytest.approx(np.sqrt(5.0))
    assert metrics.value("grpo_completion_length_mean_tokens") == 23.5
    assert metrics.value("grpo_completion_truncated_ratio") == 0.5
    assert metrics.value("grpo_learning_rate") == 1e-6


def test_advantages_of_the_wrong_length_skip_the_step():
    with monitor() as m:
        assert m.record_step(1, good(), advantages=[1.0, 2.0]) is None
        assert skipped(m, "length_mismatch") == 1.0


def test_eval_accuracy_stays_on_metrics_between_evaluations():
    with monitor() as m:
        m.record_step(1, good(), eval_accuracy=0.25)
        second = m.record_step(2, good())
        assert second.value("grpo_eval_accuracy_ratio") is None  # the store keeps what the step measured
        assert m.registry.get_sample_value("grpo_eval_accuracy_ratio", {"run_id": "run"}) == 0.25
        m.record_step(3, good(), eval_accuracy=0.5)
        assert m.registry.get_sample_value("grpo_eval_accuracy_ratio", {"run_id": "run"}) == 0.5


def test_memory_is_bounded_by_the_window():
    with monitor(window_size=10) as m:
        for step in range(1, 501):
            m.record_step(step, good())
        # the window holds max(window_size, the longest trend rule's window) rows, never more
        assert len(m.window) == m.window.capacity < 100
        assert m.recent("grpo_step", last=10).tolist() == list(range(491, 501))


class FailingSink:
    name = "flaky"
    loud = False

    def __init__(self):
        self.calls = 0

    def write_step(self, metrics):
        self.calls += 1
        raise ConnectionError("mirror down")

    def write_alerts(self, events):
        pass

    def close(self, summary):
        pass


def test_a_failing_sink_is_counted_logged_once_and_training_goes_on(caplog):
    sink = FailingSink()
    with monitor(extra_sinks=[sink]) as m:
        for step in range(1, 4):
            assert m.record_step(step, good()) is not None
        assert m.registry.get_sample_value("rewardscope_sink_errors_total", {"run_id": "run", "sink": "flaky"}) == 3.0
    assert sink.calls == 3
    assert caplog.text.count("sink flaky failed") == 1


class FixedAlerts:
    """A minimal AlertEvaluator: fires once on step 2, asks for one trend."""

    def bind(self, run_id, reward_functions):
        self.run_id = run_id

    def trend_requirements(self):
        return [("grpo_reward_mean", 3), ("grpo_reward_fn_mean", 2)]

    def evaluate(self, metrics, slopes):
        self.slopes = dict(slopes)
        if metrics.step == 2:
            from rewardscope.alerting.events import AlertState
            return [AlertEvent("Test", AlertState.FIRING, "warning", 2, 0.0, {"run_id": self.run_id}, 1.0, 0.5, "summary")]
        return []


def test_alert_evaluator_gets_slopes_and_its_events_are_counted_and_printed(capsys):
    engine = FixedAlerts()
    with monitor(alerts=engine, print_alerts=True) as m:
        for step, value in enumerate([0.0, 1.0, 0.5, 1.0], start=1):
            m.record_step(step, {"a": np.full(2, value), "b": np.zeros(2)})
        assert m.registry.get_sample_value("grpo_alerts_fired_total", {"run_id": "run", "alertname": "Test", "severity": "warning"}) == 1.0
        assert m.registry.get_sample_value("grpo_alert_firing", {"run_id": "run", "alertname": "Test", "severity": "warning"}) == 1.0
        # last three steps 2, 3, 4 with means 1.0, 0.5, 1.0: slope 0
        assert engine.slopes[("grpo_reward_mean", "", 3)] == 0.0
        assert engine.slopes[("grpo_reward_fn_mean", "a", 2)] == pytest.approx(0.5)
        assert m.registry.get_sample_value("grpo_metric_slope_per_step",
                                           {"run_id": "run", "metric": "grpo_reward_fn_mean", "reward_fn": "a", "window_steps": "2"}) == 0.5
    assert "FIRING warning Test {run_id=run} step=2 value=1 threshold=0.5: summary" in capsys.readouterr().out


def test_invalid_construction_is_a_clear_error():
    with pytest.raises(ValueError, match="run_id"):
        RewardMonitor("a/b", SPECS, run_dir=None)
    with pytest.raises(ValueError, match="group_size"):
        RewardMonitor("r", SPECS, run_dir=None, group_size=0)
    with pytest.raises(ValueError, match="duplicate"):
        RewardMonitor("r", ["a", "a"], run_dir=None)
    with pytest.raises(ValueError, match="min_value"):
        RewardFunctionSpec("x", 1.0, 2.0, 1.0)


def test_closed_monitor_refuses_steps():
    m = monitor()
    m.close()
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.record_step(1, good())


def test_printed_alerts_can_go_to_a_progress_bar_writer(capsys):
    lines = []
    with monitor(alerts=FixedAlerts(), print_alerts=True, alert_printer=lines.append) as m:
        for step in range(1, 4):
            m.record_step(step, good())
    assert lines == ["[rewardscope] FIRING warning Test {run_id=run} step=2 value=1 threshold=0.5: summary"]
    assert capsys.readouterr().out == ""
