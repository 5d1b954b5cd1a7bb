"""GPU hardware profiles: cited numbers loaded from ``hardware_profiles/*.toml`` into a frozen dataclass.

Nothing is probed at import. :func:`load_profile` reads the packaged TOML files (validated, cached);
:func:`detect_profile` asks torch about a CUDA device only when called, and :func:`profile_to_toml`
writes a profile back in the same format (``tunekit hw detect --out``).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

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


def _check_consistency(p: GPUProfile, origin: str) -> None:
    """Cross-field checks: numbers that contradict each other or the architecture's limits."""
    uncited = [f for f in CITED_FIELDS if f not in p.sources]
    if uncited:
        raise _fail(origin, uncited[0], "has no entry under [sources]")
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
    facts = ARCH_FACTS.get(p.compute_capability)
    if facts is None:
        return
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
    """Load and validate one profile TOML file (not cached; ValueError names the file and field)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
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


# ---- detection ---------------------------------------------------------------------------------------

# Dense tensor-core FLOP per clock per SM for 16-bit inputs with fp32 accumulation, and fp32 FLOP per
# clock per SM (2 per FMA lane), back-computed from the datasheets of the packaged profiles:
# A100 312 TF / (108 SMs x 1410 MHz) = 2048; A10 125 TF / (72 x 1695 MHz) = 1024; L4 121 TF / (58 x
# 2040 MHz) = 1022; H100 SXM 989 TF / (132 x 1830 MHz) = 4096. fp32: 64 lanes on sm_80, 128 after.
# GeForce boards run fp32-accumulated tensor math at half these rates (RTX 4090: 165 TF, not 330), so
# an unlisted GeForce GPU's estimate is optimistic by 2x; its profile's sources say it is an estimate.
_FLOP_PER_CLOCK = {(8, 0): (2048, 128), (8, 6): (1024, 256), (8, 9): (1024, 256), (9, 0): (4096, 256)}
# PTX ISA, mma.sync shapes per input type: f16/bf16 m16n8k16 and m16n8k8; tf32 m16n8k8 and m16n8k4;
# f64 m8n8k4 (sm_80+); e4m3/e5m2 m16n8k32 (sm_89+). FP64 tensor cores exist only on GA100/GH100.
_MMA = {
    "float16": ("m16n8k16", "m16n8k8"),
    "bfloat16": ("m16n8k16", "m16n8k8"),
    "tfloat32": ("m16n8k8", "m16n8k4"),
    "float64": ("m8n8k4",),
    "float8": ("m16n8k32",),
}
_TENSOR_RATIO = {"float16": 1.0, "bfloat16": 1.0, "tfloat32": 0.5, "float8": 2.0}


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {"", "nvidia", "geforce"}


# Words that name a board form factor: an "A100 80GB PCIe" must not match the SXM4 profile, whose
# bandwidth and clocks differ, even though CC and SM count agree.
_FORM_FACTORS = {"pcie", "sxm", "sxm2", "sxm4", "sxm5", "nvl"}


def _match(props: Any) -> GPUProfile | None:
    """The packaged profile with the device's CC and SM count whose name shares most words with it."""
    cc = (props.major, props.minor)
    words = _tokens(props.name)
    scored = []
    for p in list_profiles():
        if p.compute_capability != cc or p.sm_count != props.multi_processor_count:
            continue
        known = _tokens(p.display_name).union(*(_tokens(a) for a in p.aliases))
        if words & _FORM_FACTORS and not words & _FORM_FACTORS & known:
            continue
        scored.append((len(words & known), p.name, p))
    scored.sort(reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return None
    return scored[0][2]


def _from_properties(props: Any, device: int) -> GPUProfile:
    """A profile built from the device's reported properties plus the architecture's limits."""
    cc = (props.major, props.minor)
    facts = ARCH_FACTS.get(cc)
    if facts is None:
        raise RuntimeError(
            f"GPU {props.name!r} has compute capability {cc[0]}.{cc[1]}, which tunekit has no "
            f"architecture limits for (known: {', '.join(f'{a}.{b}' for a, b in ARCH_FACTS)}); "
            "write a profile TOML by hand (see hardware_profiles/)"
        )
    reported = f"torch.cuda.get_device_properties({device}) on {props.name!r}"
    est = f"Estimate: {cc[0]}.{cc[1]} per-SM rate (tunekit.hardware._FLOP_PER_CLOCK) x SMs x boost clock"
    clock_mhz = round(getattr(props, "clock_rate", 0) / 1000)  # clock_rate is in kHz
    tensor_per_clk, fp32_per_clk = _FLOP_PER_CLOCK[cc]
    dtypes = ["float16", "bfloat16", "tfloat32"] + (["float8"] if cc >= (8, 9) else [])
    tflops = {
        d: props.multi_processor_count * clock_mhz * tensor_per_clk * _TENSOR_RATIO[d] / 1e6 for d in dtypes
    }
    if cc in ((8, 0), (9, 0)):  # FP64 tensor cores: 1/16 of the 16-bit rate on GA100 and GH100
        dtypes.append("float64")
        tflops["float64"] = tflops["float16"] / 16
    # CUDA sample bandwidthTest: 2 (double data rate) x memory clock (kHz) x bus width (bytes).
    bandwidth = 2 * getattr(props, "memory_clock_rate", 0) * getattr(props, "memory_bus_width", 0) / 8 / 1e6
    if clock_mhz <= 0 or bandwidth <= 0:
        # Throughput estimates need both; a made-up number would silently skew every ranking.
        raise RuntimeError(
            f"GPU {props.name!r} matches no packaged profile and torch reports no clock rate or memory "
            "clock/bus width for it; write a profile TOML by hand (see hardware_profiles/)"
        )
    name = re.sub(r"[^a-z0-9]+", "-", props.name.lower().replace("nvidia", "")).strip("-") or "gpu"
    values: dict[str, Any] = {
        "name": f"detected-{name}",
        "display_name": props.name,
        "aliases": (),
        "compute_capability": cc,
        "sm_count": props.multi_processor_count,
        "boost_clock_mhz": clock_mhz,
        "registers_per_sm": getattr(props, "regs_per_multiprocessor", 65536),
        "registers_per_block": 65536,
        "max_registers_per_thread": 255,
        "register_allocation_unit": 256,
        "max_threads_per_block": 1024,
        "max_threads_per_sm": props.max_threads_per_multi_processor,
        "max_warps_per_sm": props.max_threads_per_multi_processor // props.warp_size,
        "max_blocks_per_sm": facts.max_blocks_per_sm,
        "warp_size": props.warp_size,
        "shared_memory_per_sm": getattr(
            props, "shared_memory_per_multiprocessor", facts.shared_memory_per_sm
        ),
        "shared_memory_per_block_optin": getattr(
            props, "shared_memory_per_block_optin", facts.shared_memory_per_block_optin
        ),
        "shared_memory_per_block_default": props.shared_memory_per_block,
        "shared_memory_reserved_per_block": 1024,
        "shared_memory_allocation_unit": 128,
        "shared_memory_bandwidth_bytes_per_clock_per_sm": 128,
        "l2_bytes": props.L2_cache_size,
        "memory_bandwidth_gbs": bandwidth,
        "tensor_tflops": MappingProxyType(tflops),
        "fp32_tflops": props.multi_processor_count * clock_mhz * fp32_per_clk / 1e6,
        "tensor_core_dtypes": tuple(dtypes),
        "mma_shapes": MappingProxyType({d: _MMA[d] for d in dtypes}),
        "grid_sync_latency_us": 1.5,
        "kernel_launch_latency_us": 4.0,
    }
    sources = {f: facts.source for f in CITED_FIELDS}
    sources.update(
        {
            f: reported
            for f in (
                "compute_capability",
                "sm_count",
                "boost_clock_mhz",
                "l2_bytes",
                "max_threads_per_sm",
                "max_warps_per_sm",
                "warp_size",
                "registers_per_sm",
                "shared_memory_per_sm",
                "shared_memory_per_block_optin",
                "shared_memory_per_block_default",
            )
        }
    )
    sources.update({f: est for f in ("tensor_tflops", "fp32_tflops")})
    sources["memory_bandwidth_gbs"] = (
        f"{reported}: 2 x memory_clock_rate x memory_bus_width / 8 (bandwidthTest)"
    )
    sources["mma_shapes"] = sources["tensor_core_dtypes"] = "NVIDIA PTX ISA, mma.sync shapes per type"
    sources["grid_sync_latency_us"] = sources["kernel_launch_latency_us"] = (
        "Estimate; calibrate with measurements"
    )
    values["sources"] = MappingProxyType(sources)
    profile = GPUProfile(**values)
    _check_consistency(profile, reported)
    return profile


def detect_profile(device: int = 0) -> GPUProfile:
    """The profile of CUDA device ``device``: a packaged one when it matches, else one built from it."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available (torch.cuda.is_available() is False)")
    if not isinstance(device, int) or isinstance(device, bool) or not 0 <= device < torch.cuda.device_count():
        raise ValueError(
            f"detect_profile: device must be an index in [0, {torch.cuda.device_count()}), got {device!r}"
        )
    props = torch.cuda.get_device_properties(device)
    return _match(props) or _from_properties(props, device)
