"""Problem and KernelConfig: validation names the field, names are canonical, unique and stable."""

from __future__ import annotations

import itertools
import json

import pytest

from tunekit.problem import FAMILIES, PARAM_TAGS, KernelConfig, Problem


def lstm(**changes) -> Problem:
    fields = {"cell": "lstm", "batch": 16, "heads": 1, "head_dim": 768} | changes
    return Problem(**fields)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"cell": "transformer"}, "cell"),
        ({"cell": 3}, "cell"),
        ({"batch": 0}, "batch"),
        ({"batch": (1 << 20) + 1}, "batch"),
        ({"batch": 2.0}, "batch"),
        ({"batch": True}, "batch"),
        ({"heads": 4097}, "heads"),
        ({"head_dim": 65537}, "head_dim"),
        ({"head_dim": -48}, "head_dim"),
        ({"dtype": "float64"}, "dtype"),
        ({"direction": "sideways"}, "direction"),
    ],
    ids=lambda v: str(v),
)
def test_bad_problem_raises_value_error_naming_the_field_and_value(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}: got ") as info:
        lstm(**changes)
    assert "expected" in str(info.value)


def test_problem_properties_follow_the_cell_declaration():
    p = Problem("GRU", batch=5, heads=4, head_dim=48, dtype="float32", direction="both")
    assert p.cell == "gru"  # normalised, so equal problems have equal names
    assert (p.g_r, p.g_w, p.n_states) == (3, 3, 1)
    assert (p.dtype_bytes, p.hidden, p.directions) == (4, 192, ("forward", "backward"))
    assert lstm(dtype="bfloat16").dtype_bytes == 2


def test_canonical_name_of_the_interface_example():
    config = KernelConfig(
        "triton-fused",
        lstm(),
        "a100-sxm4-80gb",
        (("block_b", 16), ("num_warps", 4), ("num_stages", 1), ("d_pad", 1024)),
    )
    assert config.name == "lstm-fwd-tritonfused-D768-N1-B16-bf16-a100-sxm4-80gb-bb16-w4-s1-dp1024"
    assert config.params == {"block_b": 16, "num_warps": 4, "num_stages": 1, "d_pad": 1024}


def test_names_are_unique_across_params_problems_gpus_and_families():
    problems = [
        lstm(),
        lstm(head_dim=48),
        lstm(batch=5),
        lstm(heads=4),
        lstm(dtype="float16"),
        lstm(dtype="float32"),
        lstm(direction="backward"),
        lstm(direction="both"),
        lstm(cell="gru"),
    ]
    gpus = ["a100-sxm4-80gb", "a100-sxm4-40gb", "h100-sxm5-80gb"]
    params = [
        (("block_b", 16), ("num_warps", 4)),
        (("block_b", 32), ("num_warps", 4)),
        (("block_b", 16), ("num_warps", 8)),
        (("block_b", 16), ("num_warps", 4), ("num_stages", 2)),
    ]
    configs = [KernelConfig(*c) for c in itertools.product(FAMILIES, problems, gpus, params)]
    names = [c.name for c in configs]
    assert len(set(names)) == len(configs)


def test_names_are_stable_values():
    a = KernelConfig("cuda-fused", lstm(), "h100-sxm5-80gb", (("hidden_per_block", 8), ("warps_rows", 4)))
    b = KernelConfig("cuda-fused", lstm(), "h100-sxm5-80gb", [["hidden_per_block", 8], ["warps_rows", 4]])
    assert a == b and hash(a) == hash(b) and a.name == b.name
    assert a.name == "lstm-fwd-cudafused-D768-N1-B16-bf16-h100-sxm5-80gb-hb8-wr4"


def test_param_tags_are_distinct_and_not_full_names():
    tags = list(PARAM_TAGS.values())
    assert len(set(tags)) == len(tags)
    assert not set(tags) & set(PARAM_TAGS)


def test_as_dict_is_json_and_round_trips():
    config = KernelConfig("cuda-alternating", lstm(batch=5, head_dim=48), "a100-sxm4-80gb", (("tile_m", 64),))
    data = json.loads(json.dumps(config.as_dict()))
    assert data["problem"] == {
        "cell": "lstm",
        "batch": 5,
        "heads": 1,
        "head_dim": 48,
        "dtype": "bfloat16",
        "direction": "forward",
    }
    assert KernelConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="name"):
        KernelConfig.from_dict(data | {"name": "something-else"})


@pytest.mark.parametrize(
    "args,field",
    [
        (("triton", lstm(), "a100-sxm4-80gb", ()), "family"),
        (("triton-fused", {"cell": "lstm"}, "a100-sxm4-80gb", ()), "problem"),
        (("triton-fused", lstm(), "", ()), "gpu"),
        (("triton-fused", lstm(), "a100-sxm4-80gb", (("block_b", 16.0),)), "items"),
        (("triton-fused", lstm(), "a100-sxm4-80gb", (("block_b", 16), ("block_b", 32))), "items"),
    ],
    ids=["family", "problem", "gpu", "float-value", "repeated-name"],
)
def test_bad_config_raises_value_error_naming_the_field(args, field):
    with pytest.raises(ValueError, match=rf"^{field}: got "):
        KernelConfig(*args)
