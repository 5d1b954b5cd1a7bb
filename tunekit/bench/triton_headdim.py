"""The head-dim study of the triton-fused kernels: ``reports/triton_headdim.md``.

For each GPU (sm_80, sm_90), dtype and LSTM head dim, :func:`headdim_study` asks the resource model which
configurations at B = 16 it accepts and compiles them (through the calibration's cached
:class:`~tunekit.bench.calibrate_triton.CompileRunner`); :func:`write_headdim` writes the largest head dim
for which forward and forward+backward are feasible and spill-free, with the evidence table. It runs as
part of ``python -m tunekit.bench.calibrate_triton`` (and ``tunekit bench calibrate-triton``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tunekit.bench.calibrate_triton import (
    DIRECTIONS,
    REPORTS,
    STAGES,
    WARPS,
    CompileRunner,
    Row,
    _md_table,
    compiler_verdict,
    profile_of,
)
from tunekit.validation import Prediction, TritonCase, predict

__all__ = [
    "FLASHRNN_TRAINING_LIMIT",
    "HEADDIM_DIMS",
    "HEADDIM_DTYPES",
    "HeadDimEntry",
    "headdim_cases",
    "headdim_study",
    "largest",
    "write_headdim",
]

HEADDIM_DIMS = (16, 32, 64, 96, 128, 256)
HEADDIM_DTYPES = ("bfloat16", "float32")
FLASHRNN_TRAINING_LIMIT = 64  # DESIGN §4: FlashRNN's Triton path stops at D <= 64 for training


@dataclass(frozen=True)
class HeadDimEntry:
    """One (arch, dtype, head dim, direction): the model's accepted configurations, compiled."""

    arch: int
    dtype: str
    head_dim: int
    direction: str
    accepted: tuple[Row, ...]  # every configuration the model accepts, with its compile
    rejected_by: tuple[str, ...]  # constraints that reject the others
    witness: Row | None  # when none is accepted: the likeliest configuration, compiled

    @property
    def feasible(self) -> bool:
        """Accepted by the model and every accepted configuration compiles spill-free."""
        return bool(self.accepted) and all(r.compiler_ok for r in self.accepted)

    def model_cell(self) -> str:
        if not self.accepted:
            return f"none ({', '.join(self.rejected_by)})"
        names = ", ".join(f"w{r.case.num_warps}s{r.case.num_stages}" for r in self.accepted)
        return f"{len(self.accepted)}: {names}"

    def compiler_cell(self) -> str:
        if self.accepted:
            bad = [r for r in self.accepted if not r.compiler_ok]
            regs = max(r.compiled.registers for r in self.accepted)
            shared = max(r.compiled.shared for r in self.accepted)
            state = "all spill-free" if not bad else f"{len(bad)} FAIL: {compiler_verdict(bad[0])}"
            return f"{state} (max {regs} regs, {shared} B shared)"
        if self.witness is None:
            return "not compiled (shared memory alone rules it out)"
        w = self.witness
        return f"w{w.case.num_warps}s{w.case.num_stages}: {w.compiled.registers} regs, {compiler_verdict(w)}"


def headdim_cases(dtype: str, head_dim: int, direction: str) -> list[TritonCase]:
    """LSTM at B = 16 (so block_b = 16), every num_warps; num_stages 1..2 (the forward ignores it)."""
    stages = STAGES if direction == "backward" else (1,)
    return [TritonCase("lstm", direction, dtype, head_dim, 16, w, s) for w in WARPS for s in stages]


def headdim_study(
    archs: Sequence[int], runner: CompileRunner, progress: Callable[[str], None] | None = None
) -> list[HeadDimEntry]:
    """For each arch, dtype, head dim and direction: the model's verdict, checked by the compiler."""
    entries = []
    for arch in archs:
        gpu = profile_of(arch)
        for dtype in HEADDIM_DTYPES:
            for head_dim in HEADDIM_DIMS:
                for direction in DIRECTIONS:
                    cases = headdim_cases(dtype, head_dim, direction)
                    predicted = [(c, predict(c, gpu)) for c in cases]

                    def row(case: TritonCase, p: Prediction, arch: int = arch) -> Row:
                        return Row(case.name(arch), arch, case, p, runner.compile(case, arch))

                    accepted = tuple(row(c, p) for c, p in predicted if p.accepted)
                    rejected_by = sorted({v for _, p in predicted for v in p.violations})
                    witness = None
                    fits = [(c, p) for c, p in predicted if "shared_memory_per_block" not in p.violations]
                    if not accepted and fits:  # registers bind: does the compiler agree?
                        case, p = min(fits, key=lambda cp: cp[1].registers - cp[1].register_limit)
                        witness = row(case, p)
                    entries.append(
                        HeadDimEntry(arch, dtype, head_dim, direction, accepted, tuple(rejected_by), witness)
                    )
                    if progress:
                        progress(
                            f"headdim sm_{arch} {dtype} D{head_dim} {direction}: {entries[-1].model_cell()}"
                        )
    return entries


def largest(entries: Sequence[HeadDimEntry], arch: int, dtype: str, directions: Sequence[str]) -> int | None:
    """Largest head dim whose every direction in ``directions`` is feasible and spill-free."""
    ok = {
        d: all(
            e.feasible
            for e in entries
            if (e.arch, e.dtype, e.head_dim) == (arch, dtype, d) and e.direction in directions
        )
        for d in HEADDIM_DIMS
    }
    good = [d for d, fine in ok.items() if fine]
    return max(good) if good else None


def write_headdim(entries: Sequence[HeadDimEntry], archs: Sequence[int], out_dir: Path = REPORTS) -> Path:
    """reports/triton_headdim.md: the largest head dim per GPU and dtype, and the evidence table."""
    names = {80: "a100 (sm_80)", 90: "h100 (sm_90)"}
    md = [
        "# triton-fused: largest LSTM head dim per GPU (B = 16)",
        "",
        "Generated by `python -m tunekit.bench.calibrate_triton`. For each head dim D (padded to the power "
        "of two d_pad >= max(16, D)) the resource model (`tunekit/constraints/triton_resources.py`) judges "
        "every "
        "configuration at B = 16 (block_b = 16; num_warps 1..16; num_stages 1..2 for the backward); every "
        "configuration it accepts is compiled ahead of time (no GPU) and must be spill-free; when it accepts "
        "none and registers bind, the likeliest configuration is compiled to show what the compiler says.",
        "",
        "## Largest head dim",
        "",
        _md_table(
            ("GPU", "dtype", "forward", "forward + backward (training)", "FlashRNN Triton (training)"),
            [
                (
                    names.get(a, f"sm_{a}"),
                    dt,
                    largest(entries, a, dt, ("forward",)) or "none tested",
                    largest(entries, a, dt, DIRECTIONS) or "none tested",
                    f"D <= {FLASHRNN_TRAINING_LIMIT}",
                )
                for a in archs
                for dt in HEADDIM_DTYPES
            ],
        ),  # fmt: skip
        "",
        "Why the limits: the forward keeps G_r = 4 tiles of d_pad x d_pad in shared memory, the backward R "
        "and R^T (8 tiles; fp32 keeps one set in registers). bf16 D = 128 fits the forward (128 KiB + "
        "scratch) on both GPUs; D in (64, 128] pads to 128, so the backward needs 256 KiB > 163 KiB (A100) "
        "and > 227 KiB (H100); D > 128 pads to 256 and even the forward's 512 KiB fits nowhere. Head dims "
        "are padded to powers of two, so D = 96 costs the same as 128.",
        "",
        "## Evidence",
        "",
        _md_table(
            ("GPU", "dtype", "D", "direction", "model: accepted configurations", "compiler"),
            [
                (
                    names.get(e.arch, f"sm_{e.arch}"),
                    e.dtype,
                    e.head_dim,
                    e.direction,
                    e.model_cell(),
                    e.compiler_cell(),
                )
                for e in entries
            ],
        ),  # fmt: skip
        "",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "triton_headdim.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path
