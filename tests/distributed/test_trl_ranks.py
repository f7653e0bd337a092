"""TRL's GRPOTrainer on 2 processes (torchrun, CPU) with rewardscope.integrations.trl.attach: the global batch is
recorded once, in TRL's order (groups spanning the two processes whole), and TRL's own figures agree with ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torchrun_support import torchrun

from rewardscope.exporter.runstore import read_distributions, read_manifest, read_steps

WORKER = Path(__file__).with_name("worker_trl.py")
PROCESSES, PER_DEVICE, STEPS = 2, 6, 4  # 12 completions per step in groups of 4: the second group spans the processes


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl", reason="TRL is a dev dependency (pip install rewardscope[trl])")
    from rewardscope.trainer.models import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("rewardscope-cache"))


@pytest.mark.slow
def test_trl_on_two_processes_records_the_global_batch_in_trls_order(tmp_path: Path, tiny_path: Path) -> None:
    run = torchrun(PROCESSES, 20631, WORKER, str(tiny_path), str(tmp_path), timeout=400)
    assert run.returncode == 0, run.stderr[-4000:]
    store = tmp_path / "runs" / "trl-mp"
    logs = json.loads((tmp_path / "logs.json").read_text())
    names = json.loads((tmp_path / "names.json").read_text())
    # Every kind of reward function TRL accepts, named as TRL names it.
    assert names["trl"] == ["format_exact", "check_answer", "async_length", "scaled", "Coin", tiny_path.name]
    assert [f["name"] for f in read_manifest(store)["reward_functions"]] == names["trl"]

    steps = list(read_steps(store))
    assert [s["grpo_step"] for s in steps] == list(range(1, STEPS + 1)) == names["recorded"]
    assert [rewards.shape for _, rewards in read_distributions(store)] == [(6, PROCESSES * PER_DEVICE)] * STEPS
    assert len(logs) == STEPS
    for row, log in zip(steps, logs):
        for fn in names["trl"]:
            assert row[f"grpo_reward_fn_mean{{{fn}}}"] == pytest.approx(log[f"rewards/{fn}/mean"], abs=1e-4), fn
        assert row["grpo_reward_mean"] == pytest.approx(log["reward"], abs=1e-4)
        # TRL's zero-spread share (default group scaling) is ours: the groups are whole and in TRL's order.
        assert row["grpo_group_zero_std_ratio"] == pytest.approx(log["frac_reward_zero_std"], abs=1e-6)
        assert row["grpo_group_size"] == 4
    assert any(log["frac_reward_zero_std"] > 0 for log in logs)  # the check above is not vacuous
    # Sample by sample, the last step holds TRL's global batch in TRL's order (the store keeps float16 copies).
    _, last = list(read_distributions(store))[-1]
    for row, fn in zip(last, names["trl"]):
        np.testing.assert_allclose(row, names["trl_last_rewards"][fn], rtol=2e-3, atol=2e-3, err_msg=fn)
    assert names["mismatches"] == 0
    assert set(names["trl_values"]) >= {"frac_reward_zero_std", "completions/clipped_ratio", "clip_ratio/low_mean", "step_time"}
