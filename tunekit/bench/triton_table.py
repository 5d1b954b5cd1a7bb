"""The measured register table of the triton-fused kernels: walked, compiled (cached), written.

``tunekit bench calibrate-triton`` walks every :class:`~tunekit.bench.triton_sweep.Group` of its
scope (:func:`tunekit.bench.triton_sweep.walk`) and writes ``tunekit/constraints/triton_registers.json``,
which the constraint model reads (:mod:`tunekit.constraints.triton_registers`). Groups of the old
file that this run did not walk are kept when their kernel's source hash is still current.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import tunekit.constraints
from tunekit.bench.triton_compile import CompileRunner
from tunekit.bench.triton_sweep import Group, walk
from tunekit.constraints.triton_registers import TABLE, group_key, input_fingerprint
from tunekit.files import write_atomic
from tunekit.hardware import load_profile
from tunekit.kernels.triton_fused_aot import ARCH_PROFILES, Compiled, kernel_source_hash

DEFAULT_TABLE = Path(tunekit.constraints.__file__).parent / TABLE
# the batch blocks a walk compiles: 16..64 on sm_80 and sm_90 (the tuner check's GPUs), 16 on the
# others (their reach at B = 16); larger or other blocks are judged by the bound (they rarely fit)
WALK_BLOCK_BS = {80: (16, 32, 64), 90: (16, 32, 64)}
OTHER_BLOCK_BS = (16,)

Walked = dict[Group, dict[tuple[int, int, int], Compiled | None]]


def shared_limit(arch: int) -> int:
    """The opt-in shared memory per block of the profile that stands for ``arch``."""
    return load_profile(ARCH_PROFILES[arch]).shared_memory_per_block_optin


def measure(
    groups: Iterable[Group],
    runner: CompileRunner,
    progress: Callable[[str], None] | None = None,
) -> Walked:
    """Walk every group (compiles cached by the runner)."""
    out: Walked = {}
    groups = list(groups)
    for i, group in enumerate(groups):
        block_bs = WALK_BLOCK_BS.get(group.arch, OTHER_BLOCK_BS)
        out[group] = walk(group, runner.compile, shared_limit(group.arch), block_bs)
        if progress:
            progress(f"table {i + 1}/{len(groups)}: {group_key(*_key_args(group))}")
    return out


def _key_args(g: Group) -> tuple:
    return (g.cell, g.role, g.dtype, g.arch, g.d_pad, g.full)


def rows_of(points: dict[tuple[int, int, int], Compiled | None], r_once: int) -> list[list[int]]:
    """Table rows [block_b, num_warps, num_stages, r_once, registers, spill bytes, shared] of one walk;
    a point the walk did not compile (beyond a spill or the shared memory) reads registers -1."""
    rows = []
    for (bb, w, st), c in sorted(points.items()):
        if c is None:
            rows.append([bb, w, st, r_once, -1, 0, 0])
        elif not c.error:
            rows.append([bb, w, st, r_once, c.registers, c.spill_bytes, c.shared])
    return rows


def write_table(walked: Walked, path: Path = DEFAULT_TABLE) -> Path:
    """Write (or update) the table: this run's groups replace theirs; current old ones stay."""
    path = Path(path)
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"kernels": {}, "groups": {}}
    kernels = {k: h for k, h in old.get("kernels", {}).items() if _current(k, h)}
    groups = {k: rows for k, rows in old.get("groups", {}).items() if "/".join(k.split("/")[:2]) in kernels}
    fresh: dict[str, list[list[int]]] = {}
    for group, points in walked.items():
        key = group_key(*_key_args(group))
        fresh.setdefault(key, []).extend(rows_of(points, group.r_once))
        kernels[f"{group.cell}/{group.role}"] = kernel_source_hash(group.cell, group.role)
    groups |= {k: sorted(v) for k, v in fresh.items()}
    write_atomic(path, table_lines(kernels, groups))
    return path


def table_lines(kernels: dict[str, str], groups: dict[str, list[list[int]]]) -> str:
    """The table file's text: one line per group (reviewable diffs)."""
    import triton

    about = (
        "ptxas registers and spills of the triton-fused kernels compiled with maxnreg = the register cap "
        "(tunekit bench calibrate-triton); a row: block_b, num_warps, num_stages, r_once, registers "
        "(-1: known to spill, not compiled), spill bytes, shared bytes"
    )
    lines = ["{", f'"about": {json.dumps(about)},', f'"triton": {json.dumps(triton.__version__)},']
    lines.append(f'"kernels": {json.dumps(dict(sorted(kernels.items())))},')
    # the inputs each kernel was rendered from (tunekit.constraints.triton_registers.input_fingerprint)
    fingerprints = {k: input_fingerprint(*k.split("/")) for k in sorted(kernels)}
    lines.append(f'"fingerprints": {json.dumps(fingerprints)},')
    lines.append(f'"bound_margins": {json.dumps(bound_margins(groups))},')
    lines.append('"groups": {')
    items = sorted(groups.items())
    lines += [f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}," for k, v in items]
    if items:
        lines[-1] = lines[-1].rstrip(",")
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def _current(kernel: str, recorded: str) -> bool:
    """Whether a kernel's recorded source hash is the hash it renders with now."""
    try:
        return kernel_source_hash(*kernel.split("/")) == recorded
    except (KeyError, ValueError):  # a cell that is no longer registered
        return False


def bound_margins(groups: dict[str, list[list[int]]]) -> dict[str, int]:
    """Per kernel (cell/role): how far the conservative bound fell below ptxas's registers on its
    clean measured points (0 where it never did), the margin the model adds where it has no
    measurement (tunekit.constraints.triton_registers.bound_margin)."""
    from tunekit.constraints.triton_fused import kernel_resources
    from tunekit.constraints.triton_kernel import class_head_dim

    margins: dict[str, int] = {}
    for key, rows in groups.items():
        cell, role, dtype, sm, dp, kind = key.split("/")
        arch, d_pad = int(sm.removeprefix("sm")), int(dp.removeprefix("dp"))
        gpu = load_profile(ARCH_PROFILES[arch])
        d_run = class_head_dim(d_pad, kind == "full")
        kernel = f"{cell}/{role}"
        for bb, w, st, ro, registers, spill, _ in rows:
            if registers < 0 or spill:
                continue
            point = {"block_b": bb, "num_warps": w, "num_stages": st, "r_once": ro}
            bound, _ = kernel_resources(cell, role, dtype, d_run, point, gpu, use_table=False)
            margins[kernel] = max(margins.get(kernel, 0), registers - int(bound))
    return dict(sorted(margins.items()))
