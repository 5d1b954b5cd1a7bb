"""What is being tuned (``Problem``) and one answer (``KernelConfig``), as frozen values.

A ``Problem`` is a recurrent layer's shape: cell, batch, heads, head dim, dtype and direction.
A ``KernelConfig`` is one point of a kernel family's space for a problem on a named GPU: the
tunables in the model's variable order, and a canonical ``name`` (STYLE §4) that is the cache key,
the generated file name and the report row, e.g.
``lstm-fwd-tritonfused-D768-N1-B16-bf16-a100-sxm4-80gb-bb16-w4-s1-dp1024``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.cells import get_cell
from tunekit.dtypes import DTYPE_BYTES, DTYPE_SHORT

__all__ = ["DIRECTIONS", "DTYPE_BYTES", "FAMILIES", "KernelConfig", "Problem"]

DIRECTIONS: dict[str, str] = {"forward": "fwd", "backward": "bwd", "both": "both"}
FAMILIES: tuple[str, ...] = ("triton-fused", "cuda-alternating", "cuda-fused")

# Upper bounds of the validated sizes: far beyond any real layer, small enough that every product
# in the resource formulas stays an exact Python/CP-SAT integer.
MAX_HEAD_DIM = 65536
MAX_BATCH = 1 << 20
MAX_HEADS = 4096

# Short tags of tunables in canonical names; one tag per name (a test checks they are distinct).
# A tunable missing here is written with its full name.
PARAM_TAGS: dict[str, str] = {
    "block_b": "bb",
    "num_warps": "w",
    "num_stages": "s",
    "d_pad": "dp",
    "r_once": "ro",  # triton-fused backward: one copy of R
    "tf32": "tf",  # triton-fused fp32: products on tf32 tensor cores
    "tile_m": "tm",
    "tile_n": "tn",
    "tile_k": "tk",
    "warps_m": "wm",
    "warps_n": "wn",
    "stages": "st",
    "pointwise_threads": "pt",
    "hidden_per_block": "hb",
    "tile_b": "tb",
    "k_per_block": "kb",
    "warps_rows": "wr",
    "warps_k": "wk",
    "span_heads": "sh",
}


def _check_int(name: str, value: object, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise ValueError(f"{name}: got {value!r}, expected an int in 1..{hi}")


@dataclass(frozen=True)
class Problem:
    """A recurrent layer: R is [G_r, heads, head_dim, head_dim], the hidden y is [batch, heads, head_dim]."""

    cell: str
    batch: int
    heads: int
    head_dim: int
    dtype: str = "bfloat16"  # "float32" | "float16" | "bfloat16"
    direction: str = "forward"  # "forward" | "backward" | "both"

    def __post_init__(self) -> None:
        if not isinstance(self.cell, str):
            raise ValueError(f"cell: got {self.cell!r}, expected a cell name such as 'lstm'")
        object.__setattr__(self, "cell", get_cell(self.cell).name)  # ValueError lists the known cells
        _check_int("batch", self.batch, MAX_BATCH)
        _check_int("heads", self.heads, MAX_HEADS)
        _check_int("head_dim", self.head_dim, MAX_HEAD_DIM)
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype: got {self.dtype!r}, expected one of {sorted(DTYPE_BYTES)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: got {self.direction!r}, expected one of {list(DIRECTIONS)}")

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of R, Wx and the states."""
        return DTYPE_BYTES[self.dtype]

    @property
    def hidden(self) -> int:
        """Total hidden size, heads * head_dim."""
        return self.heads * self.head_dim

    @property
    def g_r(self) -> int:
        """Gates R multiplies (G_r in DESIGN §3)."""
        return len(get_cell(self.cell).r_gates)

    @property
    def g_w(self) -> int:
        """Gates read from Wx per step (G_w)."""
        return len(get_cell(self.cell).w_gates)

    @property
    def n_states(self) -> int:
        """States carried per step (S)."""
        return len(get_cell(self.cell).states)

    @property
    def directions(self) -> tuple[str, ...]:
        """The kernels one configuration must serve: ("forward",), ("backward",) or both."""
        return ("forward", "backward") if self.direction == "both" else (self.direction,)

    @property
    def tag(self) -> str:
        """The problem's part of a canonical name, e.g. ``D768-N1-B16-bf16``."""
        return f"D{self.head_dim}-N{self.heads}-B{self.batch}-{DTYPE_SHORT[self.dtype]}"


@dataclass(frozen=True)
class KernelConfig:
    """One configuration of a kernel family for a problem on a named GPU profile."""

    family: str  # one of FAMILIES
    problem: Problem
    gpu: str  # hardware profile name, e.g. "a100-sxm4-80gb"
    items: tuple[tuple[str, int], ...]  # the tunables in the model's variable order

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: got {self.family!r}, expected one of {list(FAMILIES)}")
        if not isinstance(self.problem, Problem):
            raise ValueError(f"problem: got {type(self.problem).__name__}, expected a tunekit Problem")
        if not isinstance(self.gpu, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.gpu):
            raise ValueError(f"gpu: got {self.gpu!r}, expected a hardware profile name like 'a100-sxm4-80gb'")
        items = tuple(tuple(item) for item in self.items)
        for item in items:
            ok = len(item) == 2 and isinstance(item[0], str) and item[0]
            if not ok or isinstance(item[1], bool) or not isinstance(item[1], int):
                raise ValueError(f"items: got {item!r}, expected (name, int) pairs")
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"items: got repeated names {names}, expected each tunable once")
        object.__setattr__(self, "items", items)

    @property
    def params(self) -> dict[str, int]:
        """The tunables as a dict (the triton-fused runtime reads ``params["block_b"]`` etc.)."""
        return dict(self.items)

    @property
    def name(self) -> str:
        """Canonical name: cell, direction, family, problem, GPU, then each tunable's tag and value."""
        p = self.problem
        head = f"{p.cell}-{DIRECTIONS[p.direction]}-{self.family.replace('-', '')}-{p.tag}-{self.gpu}"
        return "-".join([head] + [f"{PARAM_TAGS.get(n, n)}{v}" for n, v in self.items])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: family, gpu, problem fields, params and name."""
        return {
            "family": self.family,
            "gpu": self.gpu,
            "problem": asdict(self.problem),
            "params": self.params,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelConfig:
        """Inverse of ``as_dict`` (the name is recomputed and must match when given)."""
        missing = [k for k in ("family", "gpu", "problem", "params") if k not in data]
        if missing:
            raise ValueError(f"data: missing keys {missing}; expected the keys of KernelConfig.as_dict()")
        config = cls(
            family=data["family"],
            problem=Problem(**data["problem"]),
            gpu=data["gpu"],
            items=tuple((str(k), v) for k, v in data["params"].items()),
        )
        if "name" in data and data["name"] != config.name:
            raise ValueError(f"data: name {data['name']!r} does not match its fields ({config.name!r})")
        return config
