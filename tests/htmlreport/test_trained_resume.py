"""A real training run that crashes and resumes: the manifest records the resume (from which step, config unchanged),
and the probe answers and evidence of the dropped steps are not kept twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the trainer needs torch (rewardscope[train])")

pytestmark = pytest.mark.slow  # training runs


def test_crash_then_resume_records_the_resume_and_keeps_no_duplicates(tiny_model, tmp_path):
    from rewardscope.alerting.engine import AlertEngine
    from rewardscope.exporter.evidence import read_evidence
    from rewardscope.trainer import TrainConfig, train
    from rewardscope.trainer.probes import read_probes

    def config(**overrides):
        values = dict(model_id="tiny", cache_dir=str(tiny_model.parents[1]), device="cpu", threads=1, num_steps=6, batch_size=2,
                      num_generations=4, max_generation_steps=16, num_problems=200, eval_every=0, eval_samples=8,
                      save_interval=2, monitoring_dir=str(tmp_path / "m"), checkpoint_dir=str(tmp_path / "c"),
                      run_name="resumed", prometheus=False, enable_alerts=True, progress=False, probe_every=1,
                      probe_count=1, seed=1)
        return TrainConfig(**{**values, **overrides})

    def crash_at_3(event):
        if event.step == 3:
            raise RuntimeError("simulated crash")

    original = AlertEngine.default.__func__
    # Fires at the first step whose KL is above zero.
    overrides = {"alerts": {"kl_too_high": {"threshold": 1e-7, "for_steps": 1, "cooldown_steps": 0}}}
    AlertEngine.default = classmethod(lambda cls, _=None: original(cls, overrides))
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(config(), callbacks=[crash_at_3])
        run_dir = tmp_path / "m" / "resumed"
        assert [r["step"] for r in read_probes(run_dir)] == [1, 2, 3]  # step 3 probed before the crash
        train(config(resume="latest"))
    finally:
        AlertEngine.default = classmethod(original)

    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    assert manifest["provenance"]["command"] and len(manifest["resumes"]) == 1
    resume = manifest["resumes"][0]
    assert resume["from_step"] == 2 and resume["config_changed"] is False
    assert [r["step"] for r in read_probes(run_dir)] == [1, 2, 3, 4, 5, 6]  # step 3 once, from the resumed run
    # The KL is zero at step 1 (the adapter starts at zero) and above zero from step 2 on: the alert fires at step 2
    # and stays firing, in the first run and in the resumed one (whose engine state starts fresh, so it fires at
    # its first step, 3, again). Step 2's line survives the resume once; nothing is duplicated.
    assert [r["step"] for r in read_evidence(run_dir)] == [2, 3]
