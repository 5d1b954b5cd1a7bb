"""check_config: a configuration is accepted only when every key is known, integral and in its
model's domain, and it was tuned for this family, cell and shape (tunekit/config_check.py).
The hostile cases live in tests/test_hostile_inputs.py; these are the rules that must hold."""

from __future__ import annotations

import numpy as np
import pytest

from tunekit.config_check import OPTIONS, check_config, config_options
from tunekit.constraints import build_space
from tunekit.problem import FAMILIES, KernelConfig, Problem
from tunekit.tuning import tune

LSTM = Problem("lstm", batch=12, heads=2, head_dim=48, dtype="bfloat16", direction="both")


def test_a_mapping_becomes_the_kernel_config_of_the_call_with_implied_tunables_filled_in():
    config = check_config({"block_b": 16, "num_warps": 4, "num_stages": 1}, "triton-fused", LSTM)
    assert config.family == "triton-fused" and config.problem == LSTM and config.gpu == "a100-sxm4-80gb"
    # d_pad and tf32 have one value for this problem; r_once (two) is implied by tunekit.config_check.IMPLIED
    assert config.params == {
        "block_b": 16,
        "num_warps": 4,
        "num_stages": 1,
        "d_pad": 64,
        "r_once": 0,
        "tf32": 0,
    }


def test_numpy_integers_labels_and_options_are_accepted():
    mapping = {"block_b": np.int64(16), "num_warps": 2, "num_stages": 2, "d_pad": 64}
    mapping |= {"name": "my-run.1", "profile": "h100", "dot_precision": "tf32"}
    config = check_config(mapping, "triton-fused", LSTM)
    assert config.gpu == "h100-sxm5-80gb" and config.params["block_b"] == 16
    assert config_options(mapping, "triton-fused") == {"dot_precision": "tf32"}
    assert config_options({}, "triton-fused") == {"dot_precision": "ieee"}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_tuned_configuration_of_every_family_passes_unchanged(family):
    problem = Problem("gru", batch=16, heads=1, head_dim=64, dtype="float16", direction="both")
    result = tune(problem, "a100", backend=family, top=3)
    for candidate in [result, *result.candidates]:
        assert check_config(candidate.config, family, problem) is candidate.config
        # the same tunables as a plain mapping are accepted too
        assert check_config(dict(candidate.config.params), family, problem).params == candidate.config.params


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_knows_exactly_its_models_tunables(family):
    problem = Problem("lstm", batch=16, heads=1, head_dim=64)
    space = build_space(family, problem, "a100")
    good = space.config(space.enumerate()[0])
    for key in space.tunables:
        with pytest.raises(ValueError, match=rf"config {key}: got 3\.5 \(float\), expected an integer"):
            check_config({**good.params, key: 3.5}, family, problem)
    assert set(OPTIONS[family]) <= {"dot_precision"}


def test_a_smaller_batch_reuses_a_configuration_but_nothing_else_about_the_shape_may_differ():
    tuned = tune(LSTM, "a100", backend="triton-fused").config
    smaller = Problem("lstm", batch=5, heads=2, head_dim=48, dtype="bfloat16", direction="both")
    assert check_config(tuned, "triton-fused", smaller) is tuned  # the kernels mask rows
    forward = Problem("lstm", batch=12, heads=2, head_dim=48, dtype="bfloat16", direction="forward")
    assert check_config(tuned, "triton-fused", forward) is tuned  # "both" covers the forward
    inference = KernelConfig("triton-fused", forward, tuned.gpu, tuned.items)
    with pytest.raises(ValueError, match=r"tuned for direction='forward', this call needs 'both'"):
        check_config(inference, "triton-fused", LSTM)
