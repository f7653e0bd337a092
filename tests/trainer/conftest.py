"""Fixtures of the trainer tests: the tiny model, built once per session in a temp cache,
a fast training configuration, and a /metrics scraper."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the tiny model (built here, once per session)."""
    from rewardscope.trainer.models import ensure_tiny_model

    cache = tmp_path_factory.mktemp("rewardscope-cache")
    ensure_tiny_model(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_path(tiny_cache: Path) -> Path:
    from rewardscope.trainer.models import ensure_tiny_model

    return ensure_tiny_model(tiny_cache)


@pytest.fixture
def make_config(tmp_path: Path, tiny_cache: Path):
    """TrainConfig factory for short CPU runs writing under tmp_path."""
    from rewardscope.trainer import TrainConfig

    def make(**overrides):
        values = dict(
            model_id="tiny",
            cache_dir=str(tiny_cache),
            device="cpu",
            threads=1,
            num_steps=4,
            batch_size=2,
            num_generations=4,
            max_generation_steps=24,
            num_problems=200,
            eval_every=0,
            eval_samples=16,
            save_interval=0,
            monitoring_dir=str(tmp_path / "monitoring"),
            checkpoint_dir=str(tmp_path / "checkpoints"),
            run_name="test-run",
            prometheus=False,
            prometheus_linger=0.0,
            enable_alerts=False,
            progress=False,
        )
        values.update(overrides)
        return TrainConfig(**values)

    return make


@pytest.fixture
def scrape():
    """A function that scrapes http://127.0.0.1:<port>/metrics (a fixture, not an import:
    several conftest modules share the name)."""
    return scrape_metrics


def scrape_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of http://127.0.0.1:<port>/metrics keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
