"""RewardMonitor under torchrun: rank 0 records exactly what one process fed the concatenated shards records.

Each rank records different shards (unequal sizes, an empty shard at step 3, a NaN on rank 1);
rank 0's run store and /metrics must equal those of a single-process monitor fed the global batch
(tests/distributed/shards.py), to floating-point round-off, with one line per step.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from shards import GROUP_SIZE, SPECS, STEPS, global_step
from torchrun_support import torchrun

from rewardscope import RewardMonitor
from rewardscope.exporter.runstore import read_steps

WORKER = Path(__file__).with_name("worker_monitor.py")
# Values that depend on the wall clock or on the process, not on the batch.
TIME_DEPENDENT = ("grpo_last_step_timestamp_seconds", "grpo_step_duration_seconds", "grpo_step_duration_median_seconds",
                  "rewardscope_record_seconds",
                  "rewardscope_scrapes_total", "grpo_rank_")


def _samples(exposition: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(exposition)
            for s in family.samples if s.name.startswith(("grpo_", "rewardscope_")) and not s.name.startswith(TIME_DEPENDENT)}


def _single_process(tmp_path: Path, world: int) -> tuple[list[dict], str]:
    registry = CollectorRegistry()
    with RewardMonitor("mp", SPECS, group_size=GROUP_SIZE, run_dir=tmp_path / "single", registry=registry,
                       detectors=[]) as monitor:
        for step in range(1, STEPS + 1):
            arguments = global_step(step, world)
            assert monitor.record_step(step, arguments.pop("rewards"), **arguments) is not None
        exposition = generate_latest(registry).decode()
    return list(read_steps(tmp_path / "single" / "mp")), exposition


def _assert_same_steps(distributed: list[dict], single: list[dict]) -> None:
    assert [s["grpo_step"] for s in distributed] == [s["grpo_step"] for s in single]
    for got, want in zip(distributed, single):
        assert got.keys() == want.keys()
        for key in want:
            if key == "grpo_last_step_timestamp_seconds":
                continue
            a, b = got[key], want[key]
            if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
                assert a == b or (a is None and b is None), (key, a, b)
            else:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (got["grpo_step"], key, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("world, port", [(2, 20611), (3, 20612)])
def test_rank0_records_the_global_batch(tmp_path: Path, world: int, port: int) -> None:
    run = torchrun(world, port, WORKER, str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    steps = list(read_steps(tmp_path / "runs" / "mp"))
    assert [s["grpo_step"] for s in steps] == list(range(1, STEPS + 1))
    single_steps, single_exposition = _single_process(tmp_path, world)
    _assert_same_steps(steps, single_steps)
    assert len((tmp_path / "runs" / "mp" / "steps.jsonl").read_text().splitlines()) == STEPS

    exposition = (tmp_path / "metrics.txt").read_text()
    got, want = _samples(exposition), _samples(single_exposition)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
    # The NaN on one rank is counted once, the empty shard and unequal sizes add up.
    assert got[("grpo_reward_fn_nonfinite_total", (("reward_fn", "correct"), ("run_id", "mp")))] > 0
    ranks = {dict(labels)["rank"]: v for (name, labels), v in _rank_samples(exposition).items() if name == "grpo_rank_samples"}
    assert ranks == {str(r): float((r + 1 + STEPS % 2) * GROUP_SIZE) for r in range(world)}


def _rank_samples(exposition: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(exposition)
            for s in family.samples if s.name.startswith("grpo_rank_")}


@pytest.mark.slow
def test_a_bad_shard_on_one_rank_skips_the_step_and_keeps_the_ranks_in_step(tmp_path: Path) -> None:
    run = torchrun(2, 20613, WORKER, str(tmp_path), "bad")
    assert run.returncode == 0, run.stderr[-3000:]
    steps = list(read_steps(tmp_path / "runs" / "mp"))
    assert [s["grpo_step"] for s in steps] == [1, 3, 5, 6]
    skipped = {dict(labels)["reason"]: v for (name, labels), v in _samples((tmp_path / "metrics.txt").read_text()).items()
               if name == "grpo_skipped_steps_total"}
    assert {reason: v for reason, v in skipped.items() if v} == {"length_mismatch": 1.0, "group_split": 1.0}
    assert skipped["rank_mismatch"] == 0.0  # every reason is exported from the start
    # The steps after the bad ones are still the global batch.
    single_steps, _ = _single_process(tmp_path, 2)
    _assert_same_steps([s for s in steps if s["grpo_step"] == 6], [s for s in single_steps if s["grpo_step"] == 6])


@pytest.mark.slow
def test_a_rank_that_stops_gives_a_clear_error_naming_it(tmp_path: Path) -> None:
    run = torchrun(3, 20614, WORKER, str(tmp_path), "stop-rank", "2", "3", timeout=120)
    error = (tmp_path / "error-rank0.txt").read_text()
    assert error.startswith("RankTimeoutError: rewardscope: rank 2 did not call record_step for step 4 within 3 s"), error
    assert [s["grpo_step"] for s in read_steps(tmp_path / "runs" / "mp")] == [1, 2, 3]
    assert "RankTimeoutError" in (tmp_path / "error-rank1.txt").read_text(), run.stderr[-2000:]


@pytest.mark.slow
def test_a_monitor_built_on_rank_0_only_says_every_rank_must_build_it(tmp_path: Path) -> None:
    run = torchrun(2, 20615, WORKER, str(tmp_path), "rank0-only", timeout=120)
    error = (tmp_path / "error-rank0.txt").read_text()
    assert error.startswith("rewardscope: under torch.distributed every rank must build the RewardMonitor"), run.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # nothing written
