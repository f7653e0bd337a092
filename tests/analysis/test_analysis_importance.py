"""Function importance on a history computed by hand."""

import math

import pytest

from rewardscope import RewardFunctionSpec
from rewardscope.analysis.history import load_history
from rewardscope.analysis.importance import function_importance

SPECS = [RewardFunctionSpec("a", 1.0), RewardFunctionSpec("b", 2.0), RewardFunctionSpec("gold", 0.0)]
# combined = a + 2 b (gold has weight 0): step means 2, 4, 3
STEPS = [
    {"a": [1.0, 3.0], "b": [1.0, -1.0], "gold": [1.0, 0.0]},  # mass |4| vs |2*0|; variance 1 vs 4*1
    {"a": [2.0, 2.0], "b": [1.0, 1.0], "gold": [1.0, 1.0]},   # mass |4| vs |2*2|; no variance
    {"a": [0.0, 2.0], "b": [2.0, 0.0], "gold": [0.0, 0.0]},   # mass |2| vs |2*2|; variance 1 vs 4*1
]


def test_importance_by_hand():
    result = function_importance(load_history(STEPS, reward_functions=SPECS))
    assert result["a"]["contribution"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 3) / 3, rel=1e-12)
    assert result["b"]["contribution"] == pytest.approx(100 * (0 + 1 / 2 + 2 / 3) / 3, rel=1e-12)
    assert result["gold"]["contribution"] == 0.0
    assert result["a"]["variance_share"] == pytest.approx(20.0)
    assert result["b"]["variance_share"] == pytest.approx(80.0)
    assert result["gold"]["variance_share"] == 0.0
    # a means 2, 2, 1 against combined 2, 4, 3: centred (1/3, 1/3, -2/3) . (-1, 1, 0) = 0
    assert result["a"]["correlation"] == pytest.approx(0.0, abs=1e-12)
    # b means 0, 1, 1: r = 1 / sqrt(6/9 * 2) = sqrt(3)/2
    assert result["b"]["correlation"] == pytest.approx(math.sqrt(3) / 2, rel=1e-12)
    # gold means .5, 1, 0: r = .5 / sqrt(.5 * 2) = .5
    assert result["gold"]["correlation"] == pytest.approx(0.5, rel=1e-12)
    assert result["b"]["mean_reward"] == pytest.approx(2 / 3) and result["b"]["weight"] == 2.0


def test_means_alone_give_contributions_but_no_variance_share():
    result = function_importance(load_history([{"a": 3.0, "b": -0.5}, {"a": 1.0, "b": 0.5}], reward_functions=SPECS[:2]))
    assert result["a"]["contribution"] == pytest.approx(100 * (3 / 4 + 1 / 2) / 2)
    assert result["b"]["variance_share"] is None
    assert result["a"]["correlation"] is None  # two steps are too few for a correlation
