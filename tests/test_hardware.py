"""Hardware profiles: every packaged GPU loads, is self-consistent and cited; bad files fail clearly."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunekit import hardware
from tunekit.hardware import (
    ALIASES,
    CITED_FIELDS,
    GPUProfile,
    list_profiles,
    load_profile,
    load_profile_file,
    profile_to_toml,
)

PROFILES = list_profiles()
IDS = [p.name for p in PROFILES]

# Per-architecture limits from the CUDA C++ Programming Guide's table of technical specifications:
# (max threads/SM, max warps/SM, max blocks/SM, shared bytes/SM, opt-in shared bytes/block).
ARCH_TABLE = {
    (8, 0): (2048, 64, 32, 167936, 166912),
    (8, 6): (1536, 48, 16, 102400, 101376),
    (8, 9): (1536, 48, 24, 102400, 101376),
    (9, 0): (2048, 64, 32, 233472, 232448),
}


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_profile_matches_its_architecture(profile: GPUProfile):
    threads, warps, blocks, smem_sm, optin = ARCH_TABLE[profile.compute_capability]
    assert profile.max_threads_per_sm == threads
    assert profile.max_warps_per_sm == warps
    assert profile.max_blocks_per_sm == blocks
    assert profile.shared_memory_per_sm == smem_sm
    assert profile.shared_memory_per_block_optin == optin


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_profile_is_self_consistent(profile: GPUProfile):
    assert profile.shared_memory_per_block_optin <= profile.shared_memory_per_sm
    assert profile.max_warps_per_sm * 32 == profile.max_threads_per_sm
    assert profile.registers_per_sm == 65536
    assert profile.registers_per_block == 65536
    assert profile.warp_size == 32
    assert set(profile.tensor_core_dtypes) == set(profile.tensor_tflops) == set(profile.mma_shapes)
    assert "bfloat16" in profile.tensor_core_dtypes
    for shapes in profile.mma_shapes.values():
        assert all(re.fullmatch(r"m\d+n\d+k\d+", s) for s in shapes)
    assert profile.sm == f"sm_{profile.arch}"


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_every_number_has_a_source(profile: GPUProfile):
    numeric = {f.name for f in dataclasses.fields(GPUProfile)} - {
        "name",
        "display_name",
        "aliases",
        "sources",
    }
    assert numeric == set(CITED_FIELDS)
    for field in numeric:
        assert profile.sources.get(field, "").strip(), f"{profile.name}: {field} has no source"


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_profile_to_toml_round_trips(profile: GPUProfile, tmp_path: Path):
    path = tmp_path / f"{profile.name}.toml"
    path.write_text(profile_to_toml(profile))
    assert load_profile_file(path) == profile


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("a100", "a100-sxm4-80gb"),
        ("A100", "a100-sxm4-80gb"),
        ("a100-40gb", "a100-sxm4-40gb"),
        ("h100", "h100-sxm5-80gb"),
        ("h100-pcie", "h100-pcie-80gb"),
        ("H100-SXM5-80GB", "h100-sxm5-80gb"),
        ("h200", "h200-sxm-141gb"),
        ("l40s", "l40s-48gb"),
        ("L4", "l4-24gb"),
        ("rtx4090", "rtx4090-24gb"),
        ("4090", "rtx4090-24gb"),
        ("rtx3090", "rtx3090-24gb"),
        ("3090", "rtx3090-24gb"),
        ("a10", "a10-24gb"),
    ],
    ids=lambda v: v,
)
def test_aliases_resolve(alias: str, name: str):
    assert load_profile(alias).name == name
    if alias.lower() in ALIASES:
        assert ALIASES[alias.lower()] == name


def test_every_design_gpu_has_a_profile():
    # DESIGN §5 lists these ten GPUs; each must ship, with its architecture.
    archs = {p.name: p.arch for p in PROFILES}
    assert archs == {
        "a100-sxm4-40gb": 80,
        "a100-sxm4-80gb": 80,
        "h100-sxm5-80gb": 90,
        "h100-pcie-80gb": 90,
        "h200-sxm-141gb": 90,
        "l40s-48gb": 89,
        "l4-24gb": 89,
        "rtx4090-24gb": 89,
        "rtx3090-24gb": 86,
        "a10-24gb": 86,
    }


def test_profile_passes_through():
    profile = load_profile("a100")
    assert load_profile(profile) is profile


def test_unknown_name_lists_known_and_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown GPU 'h10'.*a100-sxm4-80gb.*Did you mean 'h100'"):
        load_profile("h10")


def test_non_string_name_is_rejected():
    with pytest.raises(ValueError, match="name_or_alias"):
        load_profile(80)  # type: ignore[arg-type]


def _write(tmp_path: Path, edit) -> Path:
    text = profile_to_toml(load_profile("a100"))
    path = tmp_path / "bad.toml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: re.sub(r"(?m)^sm_count = .*\n", "", t), "sm_count"),
        (lambda t: t.replace("sm_count = 108", 'sm_count = "108"'), "sm_count"),
        (lambda t: t.replace("max_warps_per_sm = 64", "max_warps_per_sm = 48"), "max_warps_per_sm"),
        (
            lambda t: t.replace(
                "shared_memory_per_block_optin = 166912", "shared_memory_per_block_optin = 200000"
            ),
            "shared_memory_per_block_optin",
        ),
        (lambda t: re.sub(r'(?m)^"l2_bytes" = .*\n', "", t), "l2_bytes"),
        (lambda t: t.replace('"float64" = ["m8n8k4"]', '"float64" = ["8x8x4"]'), "mma_shapes.float64"),
        (lambda t: t.replace('"float64" = 19.5', ""), "tensor_core_dtypes"),
        (lambda t: t.replace("warp_size = 32", "warp_size = 32\nsm_clock = 1"), "sm_clock"),
    ],
    ids=[
        "missing",
        "wrong-type",
        "warps-vs-threads",
        "optin-over-sm",
        "no-source",
        "bad-mma",
        "dtype-keys",
        "unknown",
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path: Path, edit, field: str):
    path = _write(tmp_path, edit)
    with pytest.raises(ValueError, match=rf"bad\.toml.*'{re.escape(field)}'"):
        load_profile_file(path)


def test_invalid_toml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("name = ")
    with pytest.raises(ValueError, match=r"broken\.toml.*not valid TOML"):
        load_profile_file(path)


def test_import_probes_nothing():
    # Importing the module must not import torch nor read the profile files (STYLE 3).
    code = (
        "import sys; import tunekit.hardware as h; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert h._packaged.cache_info().currsize == 0, 'profiles read at import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_detect_without_cuda_raises_runtime_error(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        hardware.detect_profile()
