"""GPU hardware profiles: cited numbers loaded from ``hardware_profiles/*.toml`` into a frozen dataclass.

Nothing is probed at import. :func:`load_profile` reads the packaged TOML files (validated, cached);
:func:`detect_profile` (defined in :mod:`tunekit.hardware_detect`, re-exported here lazily) asks torch
about a CUDA device only when called, and :func:`profile_to_toml` writes a profile back in the same format
(``tunekit hw detect --out``).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from tunekit.hardware_detect import detect_profile

__all__ = [
    "ALIASES",
    "ARCH_FACTS",
    "ArchFacts",
    "GPUProfile",
    "detect_profile",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "profile_names",
    "profile_to_toml",
    "suggest_profile",
]

_PACKAGE = "tunekit.hardware_profiles"
_MMA_SHAPE = re.compile(r"^m(\d+)n(\d+)k(\d+)$")


@dataclass(frozen=True)
class ArchFacts:
    """Per-architecture limits that every GPU of one compute capability shares."""

    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    shared_memory_per_sm: int
    shared_memory_per_block_optin: int
    source: str


_PG = "CUDA C++ Programming Guide, 'Technical Specifications per Compute Capability'"

# Limits per compute capability (DESIGN §5, checked against the Programming Guide table). The opt-in
# per-block maximum is the SM's capacity less the 1 KB CUDA reserves per block.
ARCH_FACTS: Mapping[tuple[int, int], ArchFacts] = MappingProxyType(
    {
        (8, 0): ArchFacts(2048, 64, 32, 164 * 1024, 163 * 1024, f"{_PG} (CC 8.0)"),
        (8, 6): ArchFacts(1536, 48, 16, 100 * 1024, 99 * 1024, f"{_PG} (CC 8.6)"),
        (8, 9): ArchFacts(1536, 48, 24, 100 * 1024, 99 * 1024, f"{_PG} (CC 8.9)"),
        (9, 0): ArchFacts(2048, 64, 32, 228 * 1024, 227 * 1024, f"{_PG} (CC 9.0)"),
    }
)


@dataclass(frozen=True)
class GPUProfile:
    """One GPU's limits and throughputs, every number with a citation in ``sources``."""

    name: str
    display_name: str
    aliases: tuple[str, ...]
    compute_capability: tuple[int, int]
    sm_count: int
    boost_clock_mhz: int
    registers_per_sm: int
    registers_per_block: int
    max_registers_per_thread: int
    register_allocation_unit: int
    max_threads_per_block: int
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    warp_size: int
    shared_memory_per_sm: int
    shared_memory_per_block_optin: int
    shared_memory_per_block_default: int
    shared_memory_reserved_per_block: int
    shared_memory_allocation_unit: int
    shared_memory_bandwidth_bytes_per_clock_per_sm: int
    l2_bytes: int
    memory_bandwidth_gbs: float
    tensor_tflops: Mapping[str, float]
    fp32_tflops: float
    tensor_core_dtypes: tuple[str, ...]
    mma_shapes: Mapping[str, tuple[str, ...]]
    grid_sync_latency_us: float
    kernel_launch_latency_us: float
    sources: Mapping[str, str]

    @property
    def arch(self) -> int:
        """Compute capability as one number: 80 for CC 8.0."""
        return self.compute_capability[0] * 10 + self.compute_capability[1]

    @property
    def sm(self) -> str:
        """The compiler's target name, e.g. ``"sm_80"``."""
        return f"sm_{self.arch}"


# Plausible ranges (inclusive) of what a profile states, checked whenever one is loaded or built.
# Each bound lies far outside every supported GPU (the packaged profiles, DESIGN §5) yet catches
# typos and unit slips (Hz for MHz, KB for bytes, 10**18 SMs) that would otherwise surface only as
# absurd predictions much later. (low, high, what the supported GPUs have)
_RANGES: Mapping[str, tuple[float, float, str]] = MappingProxyType(
    {
        "sm_count": (1, 1024, "58-142 SMs on the packaged GPUs; 144 on a full GH100"),
        "boost_clock_mhz": (100, 5000, "1410-2520 MHz"),
        "registers_per_sm": (16384, 262144, "65536 32-bit registers on CC 8.0-9.0"),
        "registers_per_block": (16384, 262144, "65536"),
        "max_registers_per_thread": (16, 255, "255, the ISA's limit"),
        "register_allocation_unit": (1, 1024, "256 registers per warp"),
        "max_threads_per_block": (32, 1024, "1024 on every CC"),
        "max_threads_per_sm": (32, 4096, "1536-2048"),
        "max_warps_per_sm": (1, 128, "48-64"),
        "max_blocks_per_sm": (1, 128, "16-32"),
        "warp_size": (32, 32, "32 on every NVIDIA GPU"),
        "shared_memory_per_sm": (1024, 1 << 20, "100-228 KB"),
        "shared_memory_per_block_optin": (1024, 1 << 20, "99-227 KB"),
        "shared_memory_per_block_default": (1024, 1 << 20, "48 KB"),
        "shared_memory_reserved_per_block": (1, 65536, "1 KB"),
        "shared_memory_allocation_unit": (1, 65536, "128 B"),
        "shared_memory_bandwidth_bytes_per_clock_per_sm": (1, 4096, "128 B per clock"),
        "l2_bytes": (1 << 16, 1 << 30, "6-96 MB"),
        "memory_bandwidth_gbs": (10, 100_000, "300-4800 GB/s"),
        "fp32_tflops": (0.01, 10_000, "19.5-91.6 TFLOP/s"),
        "grid_sync_latency_us": (0.01, 1000, "about 1.5 µs"),
        "kernel_launch_latency_us": (0.01, 1000, "about 4 µs"),
    }
)
# Throughput per SM per clock, the cross-field check of tensor_tflops and fp32_tflops against
# sm_count x boost_clock_mhz: the packaged GPUs do 512-7572 tensor FLOP (RTX 4090 fp16 to H100 fp8)
# and 128-256 fp32 FLOP per SM per clock; the bounds leave a factor of 4 either way.
_TENSOR_FLOP_PER_SM_CLOCK = (64.0, 32768.0)
_FP32_FLOP_PER_SM_CLOCK = (32.0, 1024.0)
# A profile is a few KB of TOML; anything larger is not one (and /dev/zero is never read to its end).
_MAX_PROFILE_BYTES = 1 << 20
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

# Fields that are plain labels, not measured numbers: they need no citation.
_UNCITED = ("name", "display_name", "aliases", "sources")
_INT_FIELDS = tuple(f.name for f in fields(GPUProfile) if f.type == "int")
_FLOAT_FIELDS = tuple(f.name for f in fields(GPUProfile) if f.type == "float")
CITED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GPUProfile) if f.name not in _UNCITED)


# ---- parsing and validation ----------------------------------------------------------------------


def _fail(origin: str, field: str, message: str) -> ValueError:
    return ValueError(f"hardware profile {origin}: field {field!r}: {message}")


def _str_tuple(origin: str, field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _fail(origin, field, f"expected a list of strings, got {value!r}")
    return tuple(value)


def _number(origin: str, field: str, value: Any, kind: type) -> Any:
    # bool is an int subclass in Python; a TOML `true` is never a valid count.
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise _fail(origin, field, f"expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise _fail(origin, field, f"expected a positive number, got {value!r}")
    return kind(value)


def _table(origin: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(origin, field, f"expected a table, got {value!r}")
    return dict(value)


def _parse(data: Mapping[str, Any], origin: str) -> GPUProfile:
    """Build a GPUProfile from TOML data, raising ValueError naming ``origin`` and the bad field."""
    known = {f.name for f in fields(GPUProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(origin, unknown[0], f"unknown field; expected only {sorted(known)}")
    missing = [name for name in (f.name for f in fields(GPUProfile)) if name not in data]
    if missing:
        raise _fail(origin, missing[0], "missing")
    values: dict[str, Any] = {}
    for name in ("name", "display_name"):
        if not isinstance(data[name], str) or not data[name]:
            raise _fail(origin, name, f"expected a non-empty string, got {data[name]!r}")
        values[name] = data[name]
    if not _PROFILE_NAME.fullmatch(values["name"]) or ".." in values["name"]:
        raise _fail(
            origin,
            "name",
            f"got {values['name']!r}, expected lower-case letters, digits, '.', '_', '-' "
            "(it names files and configurations, e.g. 'a100-sxm4-80gb')",
        )
    values["aliases"] = tuple(a.lower() for a in _str_tuple(origin, "aliases", data["aliases"]))
    cc = data["compute_capability"]
    if (
        not isinstance(cc, (list, tuple))
        or len(cc) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in cc)
    ):
        raise _fail(origin, "compute_capability", f"expected [major, minor] integers, got {cc!r}")
    values["compute_capability"] = (cc[0], cc[1])
    for name in _INT_FIELDS:
        values[name] = _number(origin, name, data[name], int)
    for name in _FLOAT_FIELDS:
        values[name] = _number(origin, name, data[name], float)
    tflops = _table(origin, "tensor_tflops", data["tensor_tflops"])
    values["tensor_tflops"] = MappingProxyType(
        {k: _number(origin, f"tensor_tflops.{k}", v, float) for k, v in tflops.items()}
    )
    values["tensor_core_dtypes"] = _str_tuple(origin, "tensor_core_dtypes", data["tensor_core_dtypes"])
    shapes: dict[str, tuple[str, ...]] = {}
    for dtype, raw in _table(origin, "mma_shapes", data["mma_shapes"]).items():
        shapes[dtype] = _str_tuple(origin, f"mma_shapes.{dtype}", raw)
        bad = [s for s in shapes[dtype] if not _MMA_SHAPE.match(s)]
        if bad or not shapes[dtype]:
            raise _fail(origin, f"mma_shapes.{dtype}", f"expected shapes like 'm16n8k16', got {raw!r}")
    values["mma_shapes"] = MappingProxyType(shapes)
    sources = _table(origin, "sources", data["sources"])
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise _fail(origin, f"sources.{key}", f"expected a citation string, got {text!r}")
    values["sources"] = MappingProxyType(sources)
    profile = GPUProfile(**values)
    _check_consistency(profile, origin)
    return profile


def _check_ranges(p: GPUProfile, origin: str) -> None:
    """Every number inside its plausible range, and throughputs plausible for the SMs and clock."""
    if p.compute_capability not in ARCH_FACTS:
        known = ", ".join(f"{a}.{b}" for a, b in ARCH_FACTS)
        cc = ".".join(map(str, p.compute_capability))
        raise _fail(origin, "compute_capability", f"{cc} is not supported; tunekit models {known}")
    for field, (low, high, typical) in _RANGES.items():
        value = getattr(p, field)
        if not low <= value <= high:
            raise _fail(origin, field, f"{value!r} is outside {low:g}..{high:g} (supported GPUs: {typical})")
    sm_clocks = p.sm_count * p.boost_clock_mhz * 1e6
    checks = [(f"tensor_tflops.{k}", v, _TENSOR_FLOP_PER_SM_CLOCK) for k, v in p.tensor_tflops.items()]
    checks.append(("fp32_tflops", p.fp32_tflops, _FP32_FLOP_PER_SM_CLOCK))
    for field, tflops, (low, high) in checks:
        per_clock = tflops * 1e12 / sm_clocks
        if not low <= per_clock <= high:
            raise _fail(
                origin,
                field,
                f"{tflops:g} TFLOP/s from {p.sm_count} SMs at {p.boost_clock_mhz} MHz is "
                f"{per_clock:.3g} FLOP per SM per clock, outside {low:g}..{high:g}; check sm_count, "
                "boost_clock_mhz (MHz) and the throughput (TFLOP/s)",
            )


def _check_consistency(p: GPUProfile, origin: str) -> None:
    """Cross-field checks: numbers that contradict each other or the architecture's limits."""
    uncited = [f for f in CITED_FIELDS if f not in p.sources]
    if uncited:
        raise _fail(origin, uncited[0], "has no entry under [sources]")
    _check_ranges(p, origin)
    if p.max_warps_per_sm * p.warp_size != p.max_threads_per_sm:
        raise _fail(
            origin,
            "max_warps_per_sm",
            f"{p.max_warps_per_sm} warps x {p.warp_size} != max_threads_per_sm {p.max_threads_per_sm}",
        )
    if p.registers_per_block > p.registers_per_sm:
        raise _fail(origin, "registers_per_block", f"{p.registers_per_block} > registers_per_sm")
    if p.shared_memory_per_block_optin + p.shared_memory_reserved_per_block > p.shared_memory_per_sm:
        raise _fail(
            origin,
            "shared_memory_per_block_optin",
            f"{p.shared_memory_per_block_optin} + {p.shared_memory_reserved_per_block} reserved exceeds "
            f"shared_memory_per_sm {p.shared_memory_per_sm}",
        )
    if p.shared_memory_per_block_default > p.shared_memory_per_block_optin:
        raise _fail(origin, "shared_memory_per_block_default", "exceeds shared_memory_per_block_optin")
    if p.max_threads_per_block > p.max_threads_per_sm:
        raise _fail(origin, "max_threads_per_block", "exceeds max_threads_per_sm")
    if set(p.tensor_core_dtypes) != set(p.tensor_tflops) or set(p.tensor_core_dtypes) != set(p.mma_shapes):
        raise _fail(
            origin,
            "tensor_core_dtypes",
            f"{sorted(p.tensor_core_dtypes)} must equal the keys of tensor_tflops {sorted(p.tensor_tflops)} "
            f"and of mma_shapes {sorted(p.mma_shapes)}",
        )
    facts = ARCH_FACTS[p.compute_capability]  # _check_ranges refused an unknown one
    for field in ("max_threads_per_sm", "max_warps_per_sm", "max_blocks_per_sm", "shared_memory_per_sm"):
        expected = getattr(facts, field)
        if getattr(p, field) != expected:
            raise _fail(origin, field, f"{getattr(p, field)} but {p.sm} has {expected} ({facts.source})")
    if p.shared_memory_per_block_optin != facts.shared_memory_per_block_optin:
        raise _fail(
            origin,
            "shared_memory_per_block_optin",
            f"{p.shared_memory_per_block_optin} but {p.sm} allows {facts.shared_memory_per_block_optin}",
        )


def load_profile_file(path: str | Path) -> GPUProfile:
    """Load and validate one profile TOML file (not cached).

    Every problem is a ValueError naming the file (and the field): a missing, unreadable, special
    or oversized file, bytes that are not UTF-8, invalid TOML, a missing or unknown field, a number
    outside its plausible range, numbers that contradict each other, an unsupported architecture.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"hardware profile {path}: not a regular file; expected a TOML file")
        if info.st_size > _MAX_PROFILE_BYTES:
            raise ValueError(
                f"hardware profile {path}: {info.st_size} bytes; a profile is a small TOML file "
                f"(at most {_MAX_PROFILE_BYTES} bytes)"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"hardware profile {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"hardware profile {path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "expected a TOML file like hardware_profiles/a100-sxm4-80gb.toml"
        ) from exc
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ValueError(f"hardware profile {path}: not valid TOML: {exc}") from exc
    return _parse(data, str(path))


# ---- the packaged profiles -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _packaged() -> tuple[dict[str, GPUProfile], dict[str, str]]:
    """(name -> profile, alias -> name) of every packaged TOML file, loaded once."""
    profiles: dict[str, GPUProfile] = {}
    aliases: dict[str, str] = {}
    for entry in sorted(resources.files(_PACKAGE).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        origin = f"{entry.name}"
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"hardware profile {origin}: not valid TOML: {exc}") from exc
        profile = _parse(data, origin)
        if entry.name != f"{profile.name}.toml":
            raise _fail(origin, "name", f"{profile.name!r} does not match the file name")
        profiles[profile.name] = profile
        for alias in profile.aliases:
            if alias in aliases or alias in profiles:
                raise _fail(origin, "aliases", f"{alias!r} is already used by {aliases.get(alias, alias)}")
            aliases[alias] = profile.name
    clash = sorted(set(aliases) & set(profiles))
    if clash:
        raise ValueError(f"hardware profiles: alias {clash[0]!r} is also a profile name")
    return profiles, aliases


class _Aliases(Mapping[str, str]):
    """Read-only alias -> profile name view, loaded on first use (so import reads no files)."""

    def __getitem__(self, key: str) -> str:
        return _packaged()[1][key]

    def __iter__(self):
        return iter(_packaged()[1])

    def __len__(self) -> int:
        return len(_packaged()[1])

    def __repr__(self) -> str:
        return f"ALIASES({dict(self)!r})"


ALIASES: Mapping[str, str] = _Aliases()


def profile_names() -> list[str]:
    """Names of the packaged profiles, sorted."""
    return sorted(_packaged()[0])


def list_profiles() -> list[GPUProfile]:
    """Every packaged profile, sorted by name."""
    profiles = _packaged()[0]
    return [profiles[name] for name in sorted(profiles)]


def suggest_profile(name: str) -> str | None:
    """The profile name or alias closest to ``name``, or None when nothing is close."""
    profiles, aliases = _packaged()
    close = difflib.get_close_matches(name.strip().lower(), [*profiles, *aliases], n=1, cutoff=0.5)
    return close[0] if close else None


def load_profile(name_or_alias: str | GPUProfile) -> GPUProfile:
    """The profile with this name or alias (case-insensitive); a GPUProfile passes through."""
    if isinstance(name_or_alias, GPUProfile):
        return name_or_alias
    if not isinstance(name_or_alias, str):
        raise ValueError(
            f"load_profile: name_or_alias must be a profile name or alias (str) or a GPUProfile, "
            f"got {type(name_or_alias).__name__}"
        )
    profiles, aliases = _packaged()
    key = name_or_alias.strip().lower()
    name = aliases.get(key, key)
    if name in profiles:
        return profiles[name]
    close = suggest_profile(key)
    hint = f" Did you mean {close!r}?" if close else ""
    raise ValueError(
        f"unknown GPU {name_or_alias!r}; known profiles: {', '.join(sorted(profiles))} "
        f"(aliases: {', '.join(sorted(aliases))}).{hint}"
    )


# ---- writing a profile back -------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    # JSON's string escapes (\" \\ \n \uXXXX) are valid TOML basic-string escapes.
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def profile_to_toml(profile: GPUProfile) -> str:
    """The profile as TOML in the packaged files' layout; :func:`load_profile_file` reads it back."""
    lines = [
        f"# {profile.display_name} (compute capability {profile.compute_capability[0]}."
        f"{profile.compute_capability[1]}), written by tunekit.",
        "# Every number has its source under [sources] (same key).",
        "",
    ]
    tables = ("tensor_tflops", "mma_shapes", "sources")
    for f in fields(GPUProfile):
        if f.name not in tables:
            lines.append(f"{f.name} = {_toml_value(getattr(profile, f.name))}")
    for table in tables:
        lines += ["", f"[{table}]"]
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in getattr(profile, table).items()]
    return "\n".join(lines) + "\n"


def __getattr__(name: str) -> Any:
    # detect_profile lives in tunekit.hardware_detect, which imports this module; resolve it on first use.
    if name == "detect_profile":
        from tunekit.hardware_detect import detect_profile

        return detect_profile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
