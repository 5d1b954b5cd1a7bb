"""Measured registers of the triton-fused kernels: ptxas's word where it has been asked.

``triton_registers.json`` (package data, written by ``tunekit bench calibrate-triton``) holds, per
kernel (cell and role), dtype, register architecture (:func:`register_arch`), tile ``d_pad`` and
class of D (``full``: D = d_pad; ``part``: padded lanes), the configurations that were compiled
ahead of time with the launch's options, each with ptxas's registers and spill bytes. Each kernel's
entries carry the source hash they were measured for (:func:`kernel_source_hash`: template, cell,
Triton version, compile rule); entries whose hash no longer matches the rendered kernel are
ignored, so an edited template falls back to the analytic estimate instead of stale numbers (and
``tests/test_triton_compile_check.py`` fails until the table is regenerated).

:func:`measured` returns one problem's entries; :func:`override` turns them into an expression that
replaces the estimate at exactly the measured points (indicator terms over the solver variables).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from tunekit.constraints.triton_kernel import COMPILE_RULE, register_arch
from tunekit.constraints.triton_resources import IntLike
from tunekit.solvers import Max, Min, floor_div

TABLE = "triton_registers.json"


@dataclass(frozen=True)
class Measured:
    """ptxas's result for one configuration of one kernel (``registers`` -1: not compiled, known to
    spill because a smaller configuration of the same walk spilled, see tunekit.bench.triton_sweep)."""

    block_b: int
    num_warps: int
    num_stages: int
    r_once: int
    registers: int
    spill_bytes: int
    shared: int  # Triton's metadata.shared (0 when not compiled)

    @property
    def point(self) -> tuple[int, int, int, int]:
        return (self.block_b, self.num_warps, self.num_stages, self.r_once)

    @property
    def spills(self) -> bool:
        return self.registers < 0 or self.spill_bytes > 0


def group_key(cell: str, role: str, dtype: str, arch: int, d_pad: int, full: bool) -> str:
    """The table's key of one kernel at one tile and class of D on one register architecture."""
    return f"{cell}/{role}/{dtype}/sm{register_arch(arch)}/dp{d_pad}/{'full' if full else 'part'}"


@functools.cache
def _table() -> dict:
    path = resources.files("tunekit.constraints").joinpath(TABLE)
    if not path.is_file():
        return {"kernels": {}, "groups": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _current_hash(cell: str, role: str) -> str | None:
    """The source hash of the kernel as it renders now (None for a cell that cannot render)."""
    # The one import of a later stage here: only the rendered kernel says whether a measurement
    # still describes it.
    from tunekit.kernels.triton_fused_aot import kernel_source_hash

    try:
        return kernel_source_hash(cell, role)
    except (KeyError, ValueError):
        return None


def triton_version() -> str | None:
    """The installed Triton's version, read from its metadata (no import), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def input_fingerprint(cell: str, role: str, triton: str | None = None) -> str | None:
    """A digest of what the ``role`` kernel of ``cell`` is rendered from: the Triton templates, the
    code generator and the cell package's sources, the cell's declaration and its step function's
    file, Triton's version and the compile rule. Reading files is cheap where rendering is not (it
    imports SymPy and Triton): the table records it beside the source hash, and an unchanged
    fingerprint vouches for the hash without a render. ``triton``: the version to assume (default
    the installed one). None for a cell that is not registered."""
    import hashlib
    import inspect
    from pathlib import Path

    import tunekit
    from tunekit.cells import get_cell

    try:
        declared = get_cell(cell)
    except (KeyError, ValueError):
        return None
    root = Path(tunekit.__file__).parent
    templates = Path(str(resources.files("tunekit.templates").joinpath("triton")))
    files = [*sorted(templates.glob("*.j2")), root / "codegen.py", *sorted((root / "cells").glob("*.py"))]
    try:
        files.append(Path(inspect.getfile(declared.step)))
    except (TypeError, OSError):
        return None  # a step without a source file: only the render can tell
    digest = hashlib.sha256()
    fields = (role, declared.name, declared.r_gates, declared.w_gates, declared.b_gates, declared.states,
              declared.no_grad_states, triton or triton_version(), COMPILE_RULE)  # fmt: skip
    digest.update(repr(fields).encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(table: dict, cell: str, role: str) -> bool:
    """Whether the table's entries of this kernel describe it as it renders now: its recorded
    fingerprint matches (cheap), else its recorded source hash matches a fresh render."""
    recorded = table.get("kernels", {}).get(f"{cell}/{role}")
    if recorded is None:
        return False
    fingerprint = table.get("fingerprints", {}).get(f"{cell}/{role}")
    # without Triton installed (offline tuning for a named GPU) the kernels will meet the Triton the
    # table was measured with or none: its recorded version stands
    installed = triton_version()
    now = input_fingerprint(cell, role, installed or table.get("triton"))
    if fingerprint is not None and fingerprint == now:
        return True
    if installed is None:
        return False  # no render without Triton: the bound decides
    return recorded == _current_hash(cell, role)


def entries_of(
    table: dict, cell: str, role: str, dtype: str, arch: int, d_pad: int, full: bool
) -> tuple[Measured, ...]:
    """A table's entries for this kernel, tile and class of D; empty when it has none or when the
    kernel's recorded source hash is not the one it renders with now."""
    if not is_current(table, cell, role):
        return ()
    rows = table.get("groups", {}).get(group_key(cell, role, dtype, arch, d_pad, full), [])
    return tuple(Measured(*row) for row in rows)


# The bound's margin for a kernel the table does not describe (a stale entry, a user's cell): the
# largest shortfall of the bound below ptxas on any clean compile of the built-in kernels (an sLSTM
# forward, Triton 3.9, reports/triton_tuned_check.json "bound_vs_ptxas")
DEFAULT_BOUND_MARGIN = 80


@functools.cache
def bound_margin(cell: str, role: str) -> int:
    """Registers added to the conservative bound of ``cell``'s ``role`` kernel where the table has no
    measurement: how far the bound fell below ptxas on the kernel's clean measured points (recorded
    in the table by ``tunekit bench calibrate-triton``), DEFAULT_BOUND_MARGIN without them."""
    table = _table()
    margin = table.get("bound_margins", {}).get(f"{cell}/{role}")
    if margin is None or not is_current(table, cell, role):
        return DEFAULT_BOUND_MARGIN
    return int(margin)


@functools.cache
def measured(cell: str, role: str, dtype: str, arch: int, d_pad: int, full: bool) -> tuple[Measured, ...]:
    """The package table's entries (:func:`entries_of`), read once per process."""
    return entries_of(_table(), cell, role, dtype, arch, d_pad, full)


def reload() -> None:
    """Forget what was read from the table (after ``tunekit bench calibrate-triton`` rewrote it)."""
    _table.cache_clear()
    measured.cache_clear()
    bound_margin.cache_clear()


def equals_pow2(x: IntLike, value: int) -> IntLike:
    """1 if x == value else 0, for x a power of two (a variable's domain) and value a power of two."""
    return Min(1, floor_div(x, value)) - Min(1, floor_div(x, 2 * value))


def equals_small(x: IntLike, value: int, values: tuple[int, ...]) -> IntLike:
    """1 if x == value else 0, for x ranging over two consecutive ints ``values``."""
    low, high = values
    return (x - low) if value == high else (high - x)


def override(
    estimate: IntLike,
    at: dict[tuple[int, int, int, int], tuple[int, int]],
    variables: dict[str, IntLike],
    with_form: bool,
) -> IntLike:
    """``estimate`` everywhere but at the measured points ``at``: {(block_b, num_warps, num_stages,
    r_once): (the estimate there, the value to read instead)}, turned into indicator terms over the
    solver ``variables`` (block_b, num_warps, num_stages, r_once). ``with_form`` False: the kernel
    does not depend on r_once (a forward), so a point matches both forms.

    The terms are nested by num_warps, then block_b, then num_stages (then r_once), each indicator
    built once, so the expression stays small for the solvers' vector evaluation."""
    names = ("num_warps", "block_b", "num_stages", "r_once")
    indicators: dict[tuple[str, int], IntLike] = {}

    def indicator(name: str, value: int) -> IntLike:
        if (name, value) not in indicators:
            x = variables[name]
            if name in ("num_warps", "block_b"):
                indicators[(name, value)] = equals_pow2(x, value)
            else:
                indicators[(name, value)] = equals_small(x, value, (1, 2) if name == "num_stages" else (0, 1))
        return indicators[(name, value)]

    # trie of the corrections: num_warps -> block_b -> num_stages (-> r_once) -> value - estimate
    trie: dict = {}
    for (bb, w, st, ro), (was, value) in at.items():
        if value != was:
            node = trie.setdefault(w, {}).setdefault(bb, {})
            if with_form:
                node.setdefault(st, {})[ro] = value - was
            else:
                node[st] = value - was

    def fold(node: dict | int, depth: int) -> IntLike:
        if not isinstance(node, dict):
            return node
        return sum(indicator(names[depth], key) * fold(child, depth + 1) for key, child in node.items())

    if not trie:
        return estimate
    # the sum is exact at every point, but interval arithmetic over the indicator terms cannot see
    # that it stays positive (occupancy divides by it): state it
    return Max(1, estimate + fold(trie, 0))
