"""Measured tier: check each candidate's numbers against the reference, then time it.

:func:`measure` takes a run's candidates (their predicted records) and a :class:`Runner`:

1. a candidate already measured in the database with the same runner and settings is reused,
   never timed again (an interrupted run resumes where it stopped);
2. otherwise its numbers are checked on a small problem (a short sequence) against the float64
   reference; a wrong kernel, or one that raises, is recorded as ``failed`` and never timed;
3. otherwise it is timed: warm-up runs, then repeated runs, one sample (µs per step) each;
4. each result is committed as soon as it exists (its own transaction), so an interruption loses
   at most the candidate being timed.

The winner is deterministic (``tunekit.db.choose_measured``): the fastest median; any candidate
within the fastest one's noise band ties, and ties go to the model's order, then to the name.

Runners: :class:`CudaEventRunner` (a CUDA GPU: CUDA events around each run, through
``tunekit.api.rnn``) and :class:`SimulatedRunner` (replays recorded timings, as Kernel Tuner's
simulation mode replays its cache: a tuning-database export with measured records is a
recording, so a run on a CPU reproduces a GPU's choice).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from tunekit.db.records import Record, choose_measured, now

__all__ = [
    "CudaEventRunner",
    "MeasureOutcome",
    "MeasureSettings",
    "Numerics",
    "Runner",
    "SimulatedRunner",
    "gpu_available",
    "measure",
]


@dataclass(frozen=True)
class MeasureSettings:
    """How a candidate is timed and checked."""

    steps: int = 256  # T of the timed sequence
    warmup: int = 5  # untimed runs first (compile, caches, clocks)
    repeats: int = 20  # timed runs: one sample each
    check_steps: int = 8  # T of the numerics check against the reference

    def __post_init__(self) -> None:
        for name in ("steps", "warmup", "repeats", "check_steps"):
            value = getattr(self, name)
            low = 0 if name == "warmup" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: got {value!r}, expected an int >= {low}")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Numerics:
    """A candidate's outputs against the reference's: passed when max_error <= tolerance."""

    passed: bool
    max_error: float
    tolerance: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Protocol):
    """Runs configurations: checks their numbers and times them."""

    name: str

    def families(self) -> tuple[str, ...]:
        """The kernel families this runner can run here."""
        ...

    def check(self, config: Any, settings: MeasureSettings) -> Numerics:
        """The candidate against the float64 reference on a ``settings.check_steps`` sequence."""
        ...

    def time(self, config: Any, settings: MeasureSettings) -> Sequence[float]:
        """``settings.repeats`` samples in µs per step, after ``settings.warmup`` untimed runs."""
        ...


@dataclass(frozen=True)
class MeasureOutcome:
    """Every candidate's measured record, which were timed now or reused, and the winner."""

    records: tuple[Record, ...]  # in the order given
    timed: tuple[str, ...]  # names timed (or failed) in this call
    reused: tuple[str, ...]  # names read back from the database
    winner: Record | None

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.records if r.status != "ok")


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]


def _measured(base: Record, runner: Runner, config: Any, settings: MeasureSettings) -> Record:
    """Check, then time ``config``; the measured record (failed when the check or a run fails)."""
    meta = {**settings.as_dict(), "runner": runner.name}
    try:
        numerics = runner.check(config, settings)
    except Exception as exc:  # a kernel that cannot run is a failed candidate (STYLE §7), not a crash
        numerics = Numerics(False, float("nan"), float("nan"), f"check raised {_one_line(exc)}")
    measured = replace(
        base, tier="measured", measure=meta, numerics=_json_numerics(numerics), updated_at=now()
    )
    if not numerics.passed:
        why = numerics.detail or f"max error {numerics.max_error:.3g} > tolerance {numerics.tolerance:.3g}"
        return replace(measured, status="failed", samples_us=(), note=f"wrong numbers: {why}")
    try:
        samples = tuple(float(s) for s in runner.time(config, settings))
    except Exception as exc:
        return replace(measured, status="failed", samples_us=(), note=f"timing raised {_one_line(exc)}")
    if not samples or any(not s > 0 for s in samples):
        return replace(
            measured, status="failed", samples_us=(), note=f"timing gave unusable samples {samples[:5]}"
        )
    return replace(measured, status="ok", samples_us=samples, note="")


def _json_numerics(numerics: Numerics) -> dict[str, Any]:
    # NaN is not JSON: a check that never produced numbers stores null errors
    def finite(x: float) -> float | None:
        return x if x == x and abs(x) != float("inf") else None

    return {
        "passed": numerics.passed,
        "max_error": finite(numerics.max_error),
        "tolerance": finite(numerics.tolerance),
        "detail": numerics.detail,
    }


def _reusable(stored: Record | None, runner: Runner, settings: MeasureSettings) -> bool:
    if stored is None or stored.tier != "measured" or stored.measure is None:
        return False
    return dict(stored.measure) == {**settings.as_dict(), "runner": runner.name}


def measure(
    candidates: Sequence[tuple[Any, Record]],
    runner: Runner,
    db: Any = None,
    settings: MeasureSettings | None = None,
    *,
    run_id: int | None = None,
    progress: bool = False,
    on_result: Callable[[Record, bool], None] | None = None,
) -> MeasureOutcome:
    """Measure ``candidates`` (pairs of a KernelConfig and its predicted record) with ``runner``.

    ``db``: a tunekit.db.TuningDB to resume from and commit to (None: nothing is stored).
    ``progress``: a rich progress bar on stderr. ``on_result(record, reused)`` is called per
    candidate. KeyboardInterrupt propagates after the finished candidates are committed.
    """
    settings = settings or MeasureSettings()
    records: list[Record] = []
    timed: list[str] = []
    reused: list[str] = []
    bar, task = _progress(progress, len(candidates))
    try:
        for config, base in candidates:
            if bar is not None:
                bar.update(task, description=f"measuring {config.name}")
            stored = db.get(base.key) if db is not None else None
            if _reusable(stored, runner, settings):
                record, was_reused = stored, True
                reused.append(record.name)
            else:
                record, was_reused = _measured(base, runner, config, settings), False
                timed.append(record.name)
                if db is not None:
                    db.write([record], run_id)  # committed now: an interrupted run keeps it
                    record = db.get(base.key) or record
            records.append(record)
            if on_result is not None:
                on_result(record, was_reused)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return MeasureOutcome(tuple(records), tuple(timed), tuple(reused), choose_measured(records))


def _progress(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    bar.start()
    return bar, bar.add_task("measuring", total=total)


# ---- runners -------------------------------------------------------------------------------------


@dataclass
class SimulatedRunner:
    """Replays recorded measurements instead of running kernels (Kernel Tuner's simulation mode).

    ``recording`` maps canonical configuration names to measured records (a tuning-database
    export read with ``tunekit.db.exchange.read_export``, or records built by hand): their
    numerics verdict and samples. ``noise`` adds seeded relative noise (uniform in +-noise) to each
    replayed sample; samples repeat cyclically when more repeats are asked than were recorded. A
    configuration not in the recording raises (and is recorded as failed). ``calls`` lists
    ("check"|"time", name) in order, so a test can see what was run."""

    recording: Mapping[str, Record]
    noise: float = 0.0
    seed: int = 0
    name: str = "simulated"
    calls: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Sequence[Record], **options: Any) -> SimulatedRunner:
        """A runner replaying the measured records among ``records``."""
        return cls({r.name: r for r in records if r.tier == "measured"}, **options)

    def families(self) -> tuple[str, ...]:
        return tuple(sorted({r.family for r in self.recording.values()}))

    def _entry(self, config: Any) -> Record:
        try:
            return self.recording[config.name]
        except KeyError:
            raise KeyError(f"{config.name} is not in the recording") from None

    def check(self, config: Any, settings: MeasureSettings) -> Numerics:
        self.calls.append(("check", config.name))
        entry = self._entry(config)
        n = dict(entry.numerics or {})
        if entry.status == "failed" and not n:
            return Numerics(False, float("nan"), float("nan"), entry.note or "failed when recorded")
        return Numerics(
            bool(n.get("passed", entry.status == "ok")),
            float(n.get("max_error") or 0.0),
            float(n.get("tolerance") or 0.0),
            str(n.get("detail", "")),
        )

    def time(self, config: Any, settings: MeasureSettings) -> list[float]:
        self.calls.append(("time", config.name))
        samples = self._entry(config).samples_us
        if not samples:
            raise RuntimeError(f"{config.name}: the recording has no timing samples")
        rng = random.Random(zlib.crc32(f"{self.seed}:{config.name}".encode()))
        out = [samples[i % len(samples)] for i in range(settings.repeats)]
        return [s * (1 + self.noise * rng.uniform(-1.0, 1.0)) for s in out]


def gpu_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch)."""
    import torch

    return torch.cuda.is_available()


@dataclass
class CudaEventRunner:
    """Times candidates on the current CUDA GPU with CUDA events, through ``tunekit.api.rnn``."""

    device: str = "cuda"
    name: str = "cuda-events"

    def families(self) -> tuple[str, ...]:
        import torch

        from tunekit.api import BackendUnavailableError, resolve_backend
        from tunekit.problem import FAMILIES

        found = []
        for family in FAMILIES:
            try:
                resolve_backend(family, torch.device(self.device))
            except (BackendUnavailableError, ValueError):
                continue
            found.append(family)
        return tuple(found)

    def _inputs(self, problem: Any, steps: int, seed: int) -> list[Any]:
        import torch

        from tunekit.cells import get_cell
        from tunekit.kernels.triton_fused import DTYPES

        cell = get_cell(problem.cell)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        b, n, d = problem.batch, problem.heads, problem.head_dim
        wx = torch.randn(b, steps, len(cell.w_gates), n, d, generator=gen)
        r = torch.randn(len(cell.r_gates), n, d, d, generator=gen) / d**0.5
        bias = 0.1 * torch.randn(len(cell.b_gates), n, d, generator=gen)
        s0 = 0.5 * torch.randn(len(cell.states), b, 1, n, d, generator=gen)
        if "n" in cell.states and cell.name == "slstm":  # a reachable sLSTM state: normalizer n >= 1
            s0[cell.states.index("n")] = 1 + s0[cell.states.index("n")].abs()
        return [x.to(DTYPES[problem.dtype]).to(self.device) for x in (wx, r, bias, s0)]

    def check(self, config: Any, settings: MeasureSettings) -> Numerics:
        import torch

        from tunekit.api import rnn
        from tunekit.validation import INTERPRETER_TOL, compare

        p = config.problem
        low = self._inputs(p, settings.check_steps, seed=0)
        mine = [x.clone().requires_grad_() for x in low]
        ref = [x.double().requires_grad_() for x in low]
        got = rnn(*mine, cell=p.cell, backend=config.family, config=config)
        want = rnn(*ref, cell=p.cell, backend="reference")
        rtol, atol = INTERPRETER_TOL[p.dtype]
        checks = [
            compare(f"forward {i}", a, e, rtol, atol) for i, (a, e) in enumerate(zip(got, want, strict=True))
        ]
        if p.direction != "forward":
            weights = [torch.randn_like(x, dtype=torch.float64) for x in want]
            sum(((w * x.double()).sum() for w, x in zip(weights, got, strict=True))).backward()
            sum(((w * x).sum() for w, x in zip(weights, want, strict=True))).backward()
            checks += [
                compare(f"gradient {i}", a.grad, e.grad, rtol, atol)
                for i, (a, e) in enumerate(zip(mine, ref, strict=True))
            ]
        worst = max(checks, key=lambda c: c.max_error / c.tolerance if c.tolerance else float("inf"))
        bad = [c.name for c in checks if not c.passed]
        detail = f"failed: {', '.join(bad)}" if bad else ""
        return Numerics(not bad, worst.max_error, worst.tolerance, detail)

    def time(self, config: Any, settings: MeasureSettings) -> list[float]:
        import torch

        from tunekit.api import rnn

        p = config.problem
        inputs = [x.requires_grad_(p.direction != "forward") for x in self._inputs(p, settings.steps, seed=1)]

        def forward() -> Any:
            return rnn(*inputs, cell=p.cell, backend=config.family, config=config)

        if p.direction == "forward":
            run = forward
        else:
            out = forward()
            seeds = [torch.randn_like(x) for x in out]
            if p.direction == "backward":  # the backward alone, over one stored forward graph

                def run() -> Any:
                    return torch.autograd.grad(out, inputs, seeds, retain_graph=True)
            else:

                def run() -> Any:
                    return torch.autograd.grad(forward(), inputs, seeds)

        for _ in range(settings.warmup):
            run()
        torch.cuda.synchronize()
        samples = []
        for _ in range(settings.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1e3 / settings.steps)  # ms -> µs per step
        return samples
