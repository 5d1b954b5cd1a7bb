"""One ``tunekit tune`` run with the database: rank, optionally verify and measure, record, choose.

:func:`run_tuning` ranks with the cost model (``tunekit.tuning.tune``), compiles the top candidates
for the GPU's architecture when asked (``tunekit.verify``), records the run's predicted and
compiler-verified records in one transaction, measures the top candidates of every family the runner can
run when asked (``tunekit.measure``: each result committed as it comes, so an interrupted run
resumes), and then chooses: the most trusted of the database's best record and this run's own
pick (:class:`Choice` says which, ``stored`` or ``fresh``, and its tier).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.db.records import TIERS, Record, predicted_record
from tunekit.db.schema import TuningDBError

__all__ = ["Choice", "RunOptions", "RunReport", "run_tuning"]


@dataclass(frozen=True)
class RunOptions:
    """What a run does beyond ranking."""

    verify: bool = False
    verify_top: int = 3  # candidates compiled by --verify
    measure: bool = False
    measure_top: int = 3  # candidates per family timed by --measure
    settings: Any = None  # tunekit.measure.MeasureSettings (None: its defaults)
    simulate: str | os.PathLike | None = None  # replay this export's measured records instead of a GPU
    command: str = "tunekit tune"
    progress: bool = False
    verifiers: Any = None  # family -> tunekit.verify.Verifier (None: each family's own)


@dataclass(frozen=True)
class Choice:
    """The configuration to use: from this run (``fresh``) or from the database (``stored``)."""

    source: str  # "fresh" | "stored"
    tier: str  # "predicted" | "compiler-verified" | "measured"
    record: Record

    @property
    def backend(self) -> str:
        return self.record.family

    def to_json_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "source": self.source,
            "tier": self.tier,
            "config_name": r.name,
            "backend": r.family,
            "measured_us_per_step": r.quantiles() or None,
            "samples": len(r.samples_us),
            "updated_at": r.updated_at,
        }


@dataclass(frozen=True)
class RunReport:
    """Everything a run did, for the CLI to print."""

    result: Any  # tunekit.tuning.TuneResult (the model's ranking)
    choice: Choice | None  # None: every candidate was dropped by --verify
    verified: tuple[Any, ...] = ()  # tunekit.verify.VerifyResult per verified candidate
    measured: Any = None  # tunekit.measure.MeasureOutcome
    notes: tuple[str, ...] = ()  # lines for people: what could not be done and what was done instead
    db_path: Path | None = None
    run_id: int | None = None
    db_error: str | None = None
    recovered: str | None = None
    records_written: int = 0
    interrupted: bool = False
    measure_candidates: int = 0


def _runner(options: RunOptions, notes: list[str]) -> Any:
    """The measurement runner, or None with a note saying why nothing is timed."""
    from tunekit.measure import CudaEventRunner, SimulatedRunner, gpu_available

    if options.simulate is not None:
        from tunekit.db.exchange import read_export

        return SimulatedRunner.from_records(
            read_export(options.simulate), name=f"simulated:{Path(options.simulate).name}"
        )
    if not gpu_available():
        instead = "ranked with the cost model" + (" and compile-verified" if options.verify else "")
        notes.append(
            f"measuring needs a CUDA GPU and torch sees none here: {instead} instead; nothing was timed"
        )
        return None
    return CudaEventRunner()


def _measure_candidates(problem: Any, profile: Any, families: Sequence[str], top: int, solver: str,
                        cost_model: str, notes: list[str]) -> list[tuple[Any, Record]]:  # fmt: skip
    from tunekit.tuning import NoFeasibleConfig, tune

    out = []
    for family in families:
        try:
            ranked = tune(problem, profile, backend=family, top=top, solver=solver)
        except NoFeasibleConfig:
            notes.append(f"{family}: no feasible configuration to measure")
            continue
        out += [
            (c.config, predicted_record(c, profile, i, cost_model)) for i, c in enumerate(ranked.candidates)
        ]
    return out


def run_tuning(
    problem: Any,
    profile: Any,
    *,
    backend: str = "auto",
    top: int = 5,
    solver: str = "auto",
    db_path: str | os.PathLike | None = None,
    options: RunOptions | None = None,
    report: Callable[[str], None] | None = None,
) -> RunReport:
    """Rank ``problem`` on ``profile``; verify, record, measure as ``options`` say; choose.

    Raises tunekit.tuning.NoFeasibleConfig when nothing fits and ValueError on bad input, as
    ``tune`` does. A database that cannot be opened does not stop the run: ``db_error`` says why
    and nothing is recorded or read back."""
    from tunekit.cost import active_constants
    from tunekit.db.store import TuningDB
    from tunekit.tuning import check_backend, tune

    options = options or RunOptions()
    notes: list[str] = []
    result = tune(problem, profile, backend=backend, top=top, solver=solver)
    profile = result.gpu
    cost_model = active_constants().digest
    base = {
        c.config.name: predicted_record(c, profile, i, cost_model) for i, c in enumerate(result.candidates)
    }
    records: list[Record] = list(base.values())

    verified = []
    if options.verify:
        from tunekit.verify import verified_record, verify_configs

        configs = [c.config for c in result.candidates[: options.verify_top]]
        verified = verify_configs(configs, profile, options.verifiers)
        records += [r for v in verified if (r := verified_record(base[v.config.name], v)) is not None]
    dropped = {v.config.name for v in verified if not v.kept}
    verified_ok = {v.config.name for v in verified if v.status == "ok"}

    runner, to_measure = None, []
    if options.measure:
        runner = _runner(options, notes)
        if runner is not None:
            runnable = set(runner.families())
            families = [f for f in check_backend(backend) if f in runnable]
            missing = [f for f in check_backend(backend) if f not in runnable]
            if missing:
                notes.append(f"not measured (no runnable kernels here): {', '.join(missing)}")
            to_measure = _measure_candidates(
                problem, profile, families, options.measure_top, solver, cost_model, notes
            )
            seen = set(base)
            records += [r for _, r in to_measure if r.name not in seen]

    db, db_error, run_id, recovered, path = None, None, None, None, None
    try:
        db = TuningDB(db_path, report=report)
        path = db.path
        recovered = db.recovered
        run_id = db.record_run(records, options.command)
    except TuningDBError as exc:
        db_error = str(exc)
        if db is not None:
            db.close()
            db = None
    try:
        measured, interrupted = None, False
        if runner is not None and to_measure:
            from tunekit.measure import MeasureSettings, measure

            try:
                measured = measure(to_measure, runner, db, options.settings or MeasureSettings(),
                                   run_id=run_id, progress=options.progress)  # fmt: skip
            except KeyboardInterrupt:
                interrupted = True
        stored = None
        if db is not None and not interrupted:
            stored = db.best(profile, problem, None if backend == "auto" else backend)
            # a candidate the database knows to spill or compute wrong numbers is never this run's pick
            bad = {r.name for r in db.matching(profile, problem, check_backend(backend)) if r.status != "ok"}
            known = [c.config.name for c in result.candidates if c.config.name in bad - dropped]
            if known:
                notes.append(f"skipped, recorded as rejected or failed: {', '.join(known)}")
            dropped |= bad
        choice = None if interrupted else _decide(result, stored, dropped, verified_ok, measured)
    finally:
        if db is not None:
            db.close()
    return RunReport(
        result=result,
        choice=choice,
        verified=tuple(verified),
        measured=measured,
        notes=tuple(notes),
        db_path=path,
        run_id=run_id,
        db_error=db_error,
        recovered=recovered,
        records_written=len({r.name for r in records}) if run_id is not None else 0,
        interrupted=interrupted,
        measure_candidates=len(to_measure),
    )


def _decide(
    result: Any, stored: Record | None, dropped: set[str], verified_ok: set[str], measured: Any
) -> Choice | None:
    """This run's pick against the database's best: the higher tier wins; at equal tiers this
    run's pick (it is current), except between measurements, where the database's winner is
    already chosen over this run's timings and every earlier one."""
    from tunekit.cost import active_constants

    fresh: Choice | None = None
    if measured is not None and measured.winner is not None:
        winner = measured.winner
        fresh = Choice("fresh" if winner.name in measured.timed else "stored", "measured", winner)
    else:
        cost_model = active_constants().digest
        for rank, c in enumerate(result.candidates):
            if c.config.name in dropped:
                continue
            tier = "compiler-verified" if c.config.name in verified_ok else "predicted"
            record = predicted_record(c, result.gpu, rank, cost_model)
            fresh = Choice("fresh", tier, record)
            break
    if stored is None:
        return fresh
    if fresh is None:
        return Choice("stored", stored.tier, stored)
    if TIERS.index(stored.tier) > TIERS.index(fresh.tier):
        return Choice("stored", stored.tier, stored)
    if stored.tier == fresh.tier == "measured" and stored.name != fresh.record.name:
        timed = measured.timed if measured is not None else ()
        return Choice("fresh" if stored.name in timed else "stored", "measured", stored)
    return fresh
