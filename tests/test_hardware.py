"""Hardware profiles: every packaged GPU loads, is self-consistent and cited; bad files fail clearly."""

from __future__ import annotations

import dataclasses
import os
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


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda t: t.replace("compute_capability = [8, 0]", "compute_capability = [7, 5]"),
         "compute_capability", "7.5 is not supported; tunekit models 8.0, 8.6, 8.9, 9.0"),
        (lambda t: t.replace("sm_count = 108", "sm_count = 1000000000000000000"),
         "sm_count", "1000000000000000000 is outside 1..1024"),
        (lambda t: t.replace("boost_clock_mhz = 1410", "boost_clock_mhz = 1410000000"),
         "boost_clock_mhz", "1410000000 is outside 100..5000"),
        (lambda t: t.replace("l2_bytes = 41943040", "l2_bytes = 40"), "l2_bytes", "40 is outside"),
        (lambda t: t.replace("max_registers_per_thread = 255", "max_registers_per_thread = 1024"),
         "max_registers_per_thread", "1024 is outside 16..255"),
        (lambda t: t.replace("sm_count = 108", "sm_count = 1"),
         "tensor_tflops.float16", "FLOP per SM per clock, outside 64..32768"),
        (lambda t: t.replace("fp32_tflops = 19.5", "fp32_tflops = 195.0"),
         "fp32_tflops", "195 TFLOP/s from 108 SMs at 1410 MHz is 1.28e+03 FLOP per SM per clock"),
        (lambda t: t.replace('name = "a100-sxm4-80gb"', 'name = "../../evil"'),
         "name", "got '../../evil', expected lower-case letters"),
    ],
    ids=["cc-7.5", "sm-count-1e18", "clock-in-hz", "l2-40-bytes", "registers-1024", "tflops-vs-sms",
         "fp32-10x", "name-with-dots"],
)  # fmt: skip
def test_implausible_numbers_are_refused_at_load_naming_file_and_field(tmp_path: Path, edit, field, words):
    path = _write(tmp_path, edit)
    with pytest.raises(ValueError, match=rf"bad\.toml: field '{re.escape(field)}': .*{re.escape(words)}"):
        load_profile_file(path)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "not UTF-8 text (byte 0x89 at offset 0)"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: None, "cannot read it (No such file or directory)"),
        (lambda p: p.write_text("x" * (2 << 20)), "a profile is a small TOML file"),
        (lambda p: p.write_text("a = " + "[" * 100000), "not valid TOML"),
    ],
    ids=["binary", "fifo", "directory", "missing", "two-megabytes", "deep-nesting"],
)
def test_a_file_that_is_not_a_profile_is_a_value_error_naming_it(tmp_path: Path, make, words):
    path = tmp_path / "mine.toml"
    make(path)
    with pytest.raises(ValueError, match=rf"hardware profile .*mine\.toml: .*{re.escape(words)}"):
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


# ---- detection, with torch.cuda standing in for a device ------------------------------------------


def _props(name: str, cc: tuple[int, int], sms: int, **over):
    """Fake torch.cuda.get_device_properties: an A100 80GB PCIe's numbers unless overridden."""
    from types import SimpleNamespace

    values = dict(
        name=name,
        major=cc[0],
        minor=cc[1],
        multi_processor_count=sms,
        total_memory=85_000_000_000,
        max_threads_per_multi_processor=2048 if cc in ((8, 0), (9, 0)) else 1536,
        warp_size=32,
        L2_cache_size=41943040,
        clock_rate=1410000,  # kHz
        memory_clock_rate=1512000,  # kHz
        memory_bus_width=5120,
        shared_memory_per_block=49152,
        shared_memory_per_multiprocessor=167936,
        shared_memory_per_block_optin=166912,
        regs_per_multiprocessor=65536,
    )
    values.update(over)
    return SimpleNamespace(**values)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install fake device properties; returns a setter."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def install(props):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=0: props)

    return install


@pytest.mark.parametrize(
    ("device_name", "cc", "sms", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", (8, 0), 108, "a100-sxm4-80gb"),
        ("NVIDIA A100-SXM4-40GB", (8, 0), 108, "a100-sxm4-40gb"),
        ("NVIDIA H100 80GB HBM3", (9, 0), 132, "h100-sxm5-80gb"),
        ("NVIDIA H100 PCIe", (9, 0), 114, "h100-pcie-80gb"),
        ("NVIDIA H200", (9, 0), 132, "h200-sxm-141gb"),
        ("NVIDIA L40S", (8, 9), 142, "l40s-48gb"),
        ("NVIDIA L4", (8, 9), 58, "l4-24gb"),
        ("NVIDIA GeForce RTX 4090", (8, 9), 128, "rtx4090-24gb"),
        ("NVIDIA GeForce RTX 3090", (8, 6), 82, "rtx3090-24gb"),
        ("NVIDIA A10", (8, 6), 72, "a10-24gb"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_detect_matches_packaged_profile(fake_gpu, device_name, cc, sms, expected):
    fake_gpu(_props(device_name, cc, sms))
    assert hardware.detect_profile().name == expected


def test_detect_builds_a_profile_for_an_unlisted_board(fake_gpu, tmp_path: Path):
    # An A100 80GB PCIe has the SXM4 part's CC and SM count, but another board: it must not match it.
    fake_gpu(_props("NVIDIA A100 80GB PCIe", (8, 0), 108))
    profile = hardware.detect_profile()
    assert profile.name == "detected-a100-80gb-pcie"
    assert profile.sm == "sm_80" and profile.sm_count == 108
    assert profile.max_blocks_per_sm == 32 and profile.shared_memory_per_block_optin == 166912
    # 2 x 1512 MHz x 5120 bit / 8 = 1935 GB/s, the A100 PCIe datasheet figure.
    assert profile.memory_bandwidth_gbs == pytest.approx(1935.4, abs=0.1)
    # 108 SMs x 1410 MHz x 2048 FLOP/clock = 312 TFLOP/s, the A100 datasheet's dense bf16.
    assert profile.tensor_tflops["bfloat16"] == pytest.approx(312, rel=0.01)
    assert "float64" in profile.tensor_core_dtypes
    path = tmp_path / "detected.toml"
    path.write_text(profile_to_toml(profile))
    assert load_profile_file(path) == profile


@pytest.mark.parametrize(
    ("props", "match"),
    [
        (_props("NVIDIA B200", (10, 0), 148), "compute capability 10.0"),
        (_props("NVIDIA A100 80GB PCIe", (8, 0), 108, clock_rate=0), "no clock rate"),
    ],
    ids=["unknown-arch", "no-clock"],
)
def test_detect_refuses_to_guess(fake_gpu, props, match: str):
    fake_gpu(props)
    with pytest.raises(RuntimeError, match=match):
        hardware.detect_profile()


def test_detect_rejects_a_bad_device_index(fake_gpu):
    fake_gpu(_props("NVIDIA L4", (8, 9), 58))
    with pytest.raises(ValueError, match="device must be an index"):
        hardware.detect_profile(3)
