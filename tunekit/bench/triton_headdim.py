"""The reach of the triton-fused kernels: the largest head dim per cell, dtype and GPU.

For every cell, dtype and GPU (a100, h100, l4, rtx4090) and head dim D = 8, 16, ..., 256 at B = 16,
one head, :func:`study` asks ``tune`` for the best triton-fused configuration for inference
(``direction="forward"``) and for training (``"both"``), and compiles the kernels of the answer at
the largest D found (cached): an entry counts only when every such kernel compiles without spills
within the GPU's shared memory. :func:`write` renders ``reports/triton_headdim.md`` next to FlashRNN's
Triton limits, with "every D up to" beside "largest D" (feasibility is not monotone in D where
padded lanes change the tile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunekit.bench.triton_check import FAMILY, kernel_jobs
from tunekit.files import write_atomic
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob
from tunekit.problem import Problem

GPUS = ("a100", "h100", "l4", "rtx4090")
CELLS = ("lstm", "slstm", "gru", "elman")
DTYPES = ("bfloat16", "float16", "float32")
HEAD_DIMS = tuple(range(8, 257, 8))
BATCH = 16  # FlashRNN's benchmark batch (DESIGN §7)
# FlashRNN's Triton kernels (DESIGN §4.1, §7, §8): LSTM and sLSTM only, D a power of two, forward up to
# 128 (out of shared memory at 768), training up to 64 (out of shared memory at 128)
FLASHRNN = {
    "lstm": ("128 (powers of 2)", "64 (powers of 2)"),
    "slstm": ("128 (powers of 2)", "64 (powers of 2)"),
}
USES = {"forward": "forward", "training": "both"}


@dataclass(frozen=True)
class Reach:
    """One cell, dtype, GPU and use: how far the tuner goes and what the compiler says there."""

    cell: str
    dtype: str
    gpu: str
    use: str  # "forward" or "training"
    feasible: tuple[int, ...]  # head dims with a configuration
    largest_config: str  # the configuration at the largest one
    compiled: tuple[tuple[str, Compiled], ...]  # its kernels' compiles
    jobs: tuple[tuple[CompileJob, Compiled], ...] = field(default=(), compare=False)  # the same, as jobs

    @property
    def largest(self) -> int | None:
        return max(self.feasible) if self.feasible else None

    @property
    def contiguous(self) -> int | None:
        """The largest D such that every tested D up to it has a configuration."""
        best = None
        for d in HEAD_DIMS:
            if d not in self.feasible:
                break
            best = d
        return best

    @property
    def verified(self) -> bool:
        return bool(self.compiled) and all(c.clean for _, c in self.compiled)

    def cell_text(self) -> str:
        if not self.feasible:
            return "none"
        mark = "" if self.verified else " (NOT verified)"
        every = self.contiguous
        return f"{self.largest}{mark}" + ("" if every == self.largest else f" (every D <= {every or 'none'})")


def tuned(problem: Problem, gpu: str) -> object | None:
    from tunekit.tuning import NoFeasibleConfig, tune

    try:
        return tune(problem, gpu, backend=FAMILY, top=1).config
    except NoFeasibleConfig:
        return None


def study(
    compile_all: Callable[[Sequence[CompileJob]], list[Compiled]],
    progress: Callable[[str], None] | None = None,
) -> list[Reach]:
    """Every cell x dtype x GPU x use, tuned over HEAD_DIMS; the largest answer compiled."""
    from tunekit.hardware import load_profile

    out = []
    for gpu in GPUS:
        arch = load_profile(gpu).arch
        for cell in CELLS:
            for dtype in DTYPES:
                for use, direction in USES.items():
                    configs = {}
                    for d in HEAD_DIMS:
                        config = tuned(Problem(cell, BATCH, 1, d, dtype=dtype, direction=direction), gpu)
                        if config is not None:
                            configs[d] = config
                    compiled: tuple[tuple[str, Compiled], ...] = ()
                    pairs: tuple[tuple[CompileJob, Compiled], ...] = ()
                    name = ""
                    if configs:
                        d = max(configs)
                        problem = Problem(cell, BATCH, 1, d, dtype=dtype, direction=direction)
                        jobs = kernel_jobs(problem, dict(configs[d].params), arch)
                        pairs = tuple(zip(jobs, compile_all(jobs), strict=True))
                        compiled = tuple((j.key, c) for j, c in pairs)
                        name = configs[d].name
                    out.append(Reach(cell, dtype, gpu, use, tuple(sorted(configs)), name, compiled, pairs))
                    if progress:
                        progress(f"reach {gpu} {cell} {dtype} {use}: {out[-1].cell_text()}")
    return out


def reach_table(entries: Sequence[Reach]) -> list[str]:
    """The Markdown table: one row per cell and dtype, forward / training per GPU, and FlashRNN."""
    index = {(e.cell, e.dtype, e.gpu, e.use): e for e in entries}
    header = ["cell", "dtype", *[f"{g} fwd / train" for g in GPUS], "FlashRNN Triton fwd / train"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in CELLS:
        for dtype in DTYPES:
            cells = []
            for gpu in GPUS:
                f, t = (index.get((cell, dtype, gpu, u)) for u in USES)
                cells.append(f"{f.cell_text() if f else '-'} / {t.cell_text() if t else '-'}")
            flash = FLASHRNN.get(cell)
            flash_text = f"{flash[0]} / {flash[1]}" if flash else "not supported"
            lines.append("| " + " | ".join([cell, dtype, *cells, flash_text]) + " |")
    return lines


def write(entries: Sequence[Reach], out_dir: Path) -> Path:
    """reports/triton_headdim.md: the reach table and the compiles behind its largest entries."""
    md = [
        "# triton-fused: the largest head dim per cell, dtype and GPU (B = 16, one head)",
        "",
        "Generated by `tunekit bench calibrate-triton`. For D = 8, 16, ..., 256 `tune` is asked for the "
        "best triton-fused configuration for inference (forward) and for training (forward + backward); "
        "an entry is the largest D with one, and its configuration's kernels are compiled ahead of time "
        "(no GPU): every one must compile without spills within the GPU's shared memory (marked NOT "
        'verified otherwise). "every D <= X" where some smaller D has no configuration. fp32 runs its '
        "products on tf32 tensor cores.",
        "",
        *reach_table(entries),
        "",
        "Why the limits: a program keeps its head's R (G_r tiles of d_pad x d_pad, d_pad the next power "
        "of two) in shared memory for the whole sequence; training's backward reads one copy of R in "
        "both of its products for 16-bit dtypes (fp32 keeps two: tf32 has no transposed 32-bit "
        "ldmatrix), so 16-bit LSTM training at D = 128 needs 128 KiB of R plus scratch: it fits the "
        "a100 (163 KiB) and h100 (227 KiB), not the 99 KiB of l4 and rtx4090. Registers are what ptxas "
        "reports with the launch's register cap where the measured table (`tunekit/constraints/"
        "triton_registers.json`) has the configuration; elsewhere a conservative bound decides, which "
        "refuses some configurations that compile cleanly (`reports/triton_tuned_check.json`, "
        "`refused_clean`), so an entry below the shared-memory limit may be the bound's, not ptxas's. "
        "FlashRNN's limits are its Triton kernels' (LSTM and sLSTM only, D a power of two).",
        "",
        "## The compiles behind the largest entries",
        "",
        "| GPU | cell | dtype | use | largest D | configuration | kernels: registers, spill B, shared B |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        if not e.feasible:
            continue
        kernels = "; ".join(
            f"{k.split('-')[1]}: {c.registers}, {c.spill_bytes}, {c.shared}" for k, c in e.compiled
        )
        row = (e.gpu, e.cell, e.dtype, e.use, e.largest, e.largest_config, kernels)
        md.append("| " + " | ".join(str(x) for x in row) + " |")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "triton_headdim.md"
    write_atomic(path, "\n".join(md) + "\n")
    return path
