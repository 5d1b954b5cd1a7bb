"""What a tuning record is keyed by, and the hashes that make a stale record miss.

A record is valid for one hardware profile (its name and a hash of every field but the citations),
one cell declaration (its name and a hash of its gate/state names and step expressions, so an
edited user cell misses), one family and problem, one configuration (its canonical name), one
kernel source (a hash of the family's templates and of the code that derives, prints, renders and
launches them) and one set of tool versions (tunekit, triton, CUDA's NVRTC). Nothing here imports
torch or triton: versions come from package metadata.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, fields
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from tunekit.dtypes import DTYPE_SHORT
from tunekit.problem import DIRECTIONS, FAMILIES

__all__ = [
    "KEY_FIELDS",
    "RecordKey",
    "cell_hash",
    "config_head",
    "context",
    "key_for",
    "profile_hash",
    "template_hash",
    "versions",
]

HASH_CHARS = 16  # hex digits kept of each sha256: 64 bits, no accidental collision among records

# Files whose text becomes a family's kernel (templates) or shapes how it is built and launched.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "triton-fused": ("triton/header.py.j2", "triton/fused_forward.py.j2", "triton/fused_backward.py.j2"),
    "cuda-alternating": ("cuda/header.cu.j2", "cuda/tk_cuda.cuh"),
    "cuda-fused": ("cuda/header.cu.j2", "cuda/tk_cuda.cuh"),
}
# Relative to the tunekit package: the derivation and printers that turn a cell into kernel code,
# the renderer, and the family's runtime (launch shapes and arguments).
_DERIVED = ("cells/derive.py", "cells/printers.py", "codegen.py")
_SOURCES: dict[str, tuple[str, ...]] = {
    "triton-fused": (*_DERIVED, "kernels/triton_fused.py"),
    "cuda-alternating": (*_DERIVED, "kernels/cuda_alternating.py"),
    "cuda-fused": (*_DERIVED, "kernels/cuda_fused.py"),
}


@dataclass(frozen=True, order=True)
class RecordKey:
    """Every field a stored record is looked up by (its order is the export's sort order)."""

    profile: str  # hardware profile name, e.g. "h100-sxm5-80gb"
    profile_hash: str
    cell: str
    cell_hash: str
    family: str
    batch: int
    heads: int
    head_dim: int
    dtype: str
    direction: str
    config_name: str  # the configuration's canonical name
    template_hash: str
    tunekit_version: str
    triton_version: str
    cuda_version: str

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in KEY_FIELDS)  # (dataclasses.astuple deep-copies)


KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RecordKey))


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def profile_hash(profile: Any) -> str:
    """Hash of a GPUProfile's values (citations, display name and aliases left out)."""
    values = {}
    for f in fields(profile):
        if f.name in ("sources", "display_name", "aliases"):
            continue
        value = getattr(profile, f.name)
        values[f.name] = dict(value) if hasattr(value, "items") else value
    return _digest(values)


@functools.lru_cache(maxsize=64)
def cell_hash(cell: Any) -> str:
    """Hash of a cell's declaration: its slot and state names, no-gradient states and the SymPy
    expressions of its step (``sympy.srepr``: exact, in SymPy's canonical argument order).

    Cells compare by identity, so a re-registered (edited) user cell is hashed afresh. The code
    derived from the declaration (backward, printed kernels) belongs to the template hash."""
    import sympy

    from tunekit.cells.derive import forward_expressions

    step = forward_expressions(cell)
    return _digest(
        {
            "name": cell.name,
            "gates": [cell.r_gates, cell.w_gates, cell.b_gates],
            "states": cell.states,
            "no_grad": cell.no_grad_states,
            "step": {state: sympy.srepr(expr) for state, expr in sorted(step.items())},
        }
    )


@functools.cache
def template_hash(family: str) -> str:
    """Hash of the family's templates and of the modules that render and launch them (missing
    ones, e.g. a CUDA family whose runtime is not written yet, count as absent)."""
    if family not in _TEMPLATES:
        raise ValueError(f"family: got {family!r}, expected one of {list(FAMILIES)}")
    texts: dict[str, str | None] = {}
    templates = resources.files("tunekit.templates")
    for name in _TEMPLATES[family]:
        entry = templates.joinpath(name)
        texts[f"templates/{name}"] = entry.read_text(encoding="utf-8") if entry.is_file() else None
    stem = family.replace("-", "_")
    if family.startswith("cuda-") and templates.joinpath("cuda").is_dir():
        for entry in sorted(templates.joinpath("cuda").iterdir(), key=lambda e: e.name):
            if entry.name.startswith(stem) and entry.name.endswith(".j2"):
                texts[f"templates/cuda/{entry.name}"] = entry.read_text(encoding="utf-8")
    package = Path(__file__).resolve().parent.parent
    for name in _SOURCES[family]:
        path = package / name
        texts[name] = path.read_text(encoding="utf-8") if path.is_file() else None
    return _digest(texts)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


@functools.cache
def versions() -> tuple[str, str, str]:
    """(tunekit, triton, CUDA NVRTC) versions here; "none" for a missing one."""
    from tunekit import __version__

    return __version__, _version("triton"), _version("nvidia-cuda-nvrtc")


def config_head(family: str, cell: str, batch: int, heads: int, head_dim: int, dtype: str, direction: str,
                profile: str) -> str:  # fmt: skip
    """The start of every canonical configuration name of this family, problem and profile
    (``KernelConfig.name`` up to its tunables): an imported record's name must begin with it."""
    short = DTYPE_SHORT[dtype]
    return (
        f"{cell}-{DIRECTIONS[direction]}-{family.replace('-', '')}-D{head_dim}-N{heads}-B{batch}-{short}-"
        f"{profile}-"
    )


def context(profile: Any, problem: Any, family: str) -> dict[str, Any]:
    """Every key field but the configuration's name, for ``problem`` on ``profile`` here and now."""
    from tunekit.cells import get_cell

    tunekit_version, triton_version, cuda_version = versions()
    return {
        "profile": profile.name,
        "profile_hash": profile_hash(profile),
        "cell": problem.cell,
        "cell_hash": cell_hash(get_cell(problem.cell)),
        "family": family,
        "batch": problem.batch,
        "heads": problem.heads,
        "head_dim": problem.head_dim,
        "dtype": problem.dtype,
        "direction": problem.direction,
        "template_hash": template_hash(family),
        "tunekit_version": tunekit_version,
        "triton_version": triton_version,
        "cuda_version": cuda_version,
    }


def key_for(config: Any, profile: Any) -> RecordKey:
    """The key of a KernelConfig on ``profile`` (a GPUProfile whose name the config carries)."""
    if config.gpu != profile.name:
        raise ValueError(f"config: made for {config.gpu!r}, not for the profile {profile.name!r}")
    return RecordKey(config_name=config.name, **context(profile, config.problem, config.family))
