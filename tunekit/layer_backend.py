"""Which backend and configuration a layer runs for one problem, and why.

Two levels:

* :func:`decide` is the seam: ``(profile, problem, families) -> Decision`` for a shape on a GPU
  profile, among the kernel families that can run there. It looks the problem up in the tuning
  database (:func:`tunekit.db.best`: a measured, compiler-verified or current predicted record,
  most trusted first) and returns that; when nothing is stored it tunes with the analytic model
  (:func:`tunekit.tuning.tune`, tier "predicted", once per (profile, problem, family) in this
  process) and stores the ranked candidates, so the next process finds them. A database that
  cannot be read or written never stops a layer: the reason says what happened.
* :func:`choose` is what a layer calls, once per shape (the layer keeps the answer): it turns the
  requested backend, the user's configuration, the device and the dtype into a :class:`Decision`,
  falling back to the reference only where no kernel can run (a CPU, a dtype or cell no kernel
  takes, no configuration fits) and saying so; a backend named explicitly that cannot serve the
  shape raises with the explanation instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from tunekit.api import BackendUnavailableError, known_backends, resolve_backend
from tunekit.cells import Cell, get_cell

if TYPE_CHECKING:
    from tunekit.hardware import GPUProfile
    from tunekit.problem import Problem
    from tunekit.tuning import TuneResult

__all__ = ["KERNEL_DTYPES", "TIERS", "Decision", "choose", "decide"]

# How far a configuration is trusted: ranked by the analytic cost model; compiled for the GPU's
# architecture and checked against the model's resources; timed on the GPU. The last two come
# from the tuning database.
TIERS = ("predicted", "compiler-verified", "measured")
# dtypes the tuned kernels take (tunekit.problem.DTYPE_BYTES); float64 runs on the reference only
KERNEL_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
# the profile the Triton interpreter tunes for, as tunekit.kernels.triton_fused.tuned_config does
INTERPRETER_PROFILE = "a100"


@dataclass(frozen=True)
class Decision:
    """What runs: ``backend`` with ``config`` (None for the reference), how far it is trusted, and why.

    ``tier``: one of :data:`TIERS`, "given" for a configuration the caller passed, None for the
    reference (nothing tuned). ``profile``: the hardware profile it was tuned for.
    """

    backend: str
    config: Any = None
    tier: str | None = None
    reason: str = ""
    profile: str | None = None
    predicted_us_per_step: float | None = None

    @property
    def config_name(self) -> str | None:
        """The configuration's canonical name (a KernelConfig's), or its repr for a mapping."""
        if self.config is None:
            return None
        return str(getattr(self.config, "name", self.config))

    def summary(self) -> str:
        """One line: backend, configuration and trust tier."""
        if self.config is None:
            return self.backend
        trust = f"trust: {self.tier or 'none'}"
        if self.predicted_us_per_step is not None:
            trust += f", {self.predicted_us_per_step:.3g} µs/step predicted"
        return f"{self.backend} {self.config_name} ({trust})"

    def describe(self) -> str:
        """The summary and the reason."""
        return f"{self.summary()}: {self.reason}" if self.reason else self.summary()


# ---- the seam: (profile, problem) -> decision ----------------------------------------------------

# (profile name, problem, family) -> the tuner's answer, or the NoFeasibleConfig it raised
_TUNED: dict[tuple[str, Problem, str], Any] = {}
_TUNED_MAX = 512  # distinct shapes kept per process; the oldest go first


def _tuned(profile: GPUProfile, problem: Problem, family: str) -> TuneResult:
    """``tune(problem, profile, backend=family)``, once per process (NoFeasibleConfig re-raised)."""
    from tunekit.tuning import NoFeasibleConfig, tune

    key = (profile.name, problem, family)
    if key not in _TUNED:
        try:
            _TUNED[key] = tune(problem, profile, backend=family)
        except NoFeasibleConfig as error:
            _TUNED[key] = error
        if len(_TUNED) > _TUNED_MAX:
            del _TUNED[next(iter(_TUNED))]
    answer = _TUNED[key]
    if isinstance(answer, Exception):
        raise answer
    return answer


def _stored(profile: GPUProfile, problem: Problem, families: Sequence[str]) -> tuple[Any, str]:
    """(the tuning database's best record or None, a note when the database could not be read)."""
    from tunekit.db import TuningDBError, best

    try:
        return best(profile, problem, tuple(families)), ""
    except (TuningDBError, OSError, ValueError) as error:
        return None, f"the tuning database could not be read ({error})"


def _store(profile: GPUProfile, results: Sequence[TuneResult]) -> str:
    """Record every family's ranked candidates (tier "predicted"); a note when that failed."""
    from tunekit.cost import active_constants
    from tunekit.db import TuningDB, TuningDBError, predicted_record

    digest = active_constants().digest
    records = [
        predicted_record(c, profile, rank, digest) for r in results for rank, c in enumerate(r.candidates)
    ]
    try:
        with TuningDB() as db:
            db.record_run(records, "tunekit layer (backend='auto')")
    except (TuningDBError, OSError) as error:
        return f"; not stored in the tuning database ({error})"
    return ""


def _from_record(record: Any, profile: GPUProfile) -> Decision:
    predicted = record.predicted.get("time_us_per_step") if record.predicted else None
    return Decision(
        backend=record.family,
        config=record.config(),
        tier=record.tier,
        reason=f"the tuning database's best {record.tier} record on {profile.name} "
        f"(recorded {record.updated_at})",
        profile=profile.name,
        predicted_us_per_step=None if predicted is None else float(predicted),
    )


def decide(profile: GPUProfile, problem: Problem, families: Sequence[str]) -> Decision:
    """The most trusted configuration of ``problem`` on ``profile`` among ``families``: the tuning
    database's best record when one is stored, else the fastest the cost model predicts (stored).

    Raises :class:`tunekit.tuning.NoFeasibleConfig` when nothing is stored and no family in
    ``families`` has a configuration.
    """
    key = (profile.name, problem, tuple(families))
    if key not in _DECIDED:
        _DECIDED[key] = _decide(profile, problem, families)
        if len(_DECIDED) > _TUNED_MAX:
            del _DECIDED[next(iter(_DECIDED))]
    return _DECIDED[key]


# (profile name, problem, families) -> the decision: a shape is looked up and tuned once a process
_DECIDED: dict[tuple[str, Problem, tuple[str, ...]], Decision] = {}


def _decide(profile: GPUProfile, problem: Problem, families: Sequence[str]) -> Decision:
    from tunekit.tuning import NoFeasibleConfig

    record, note = _stored(profile, problem, families)
    if record is not None:
        return _from_record(record, profile)

    results, empty = [], []
    for family in families:
        try:
            results.append(_tuned(profile, problem, family))
        except NoFeasibleConfig as error:
            empty.append(error)
    if not results:
        if len(empty) == 1:
            raise empty[0]
        raise NoFeasibleConfig(problem, profile, [space for error in empty for space in error.spaces])
    best = min(results, key=lambda r: float(r.predicted["time_us_per_step"]))
    others = [f"{r.backend} {float(r.predicted['time_us_per_step']):.3g}" for r in results if r is not best]
    if len(families) == 1:
        reason = f"the analytic cost model's best {best.backend} configuration on {profile.name}"
    else:
        reason = f"the fastest configuration the analytic cost model predicts on {profile.name} among "
        reason += ", ".join(families)
    if others:
        reason += f" (others, µs/step: {', '.join(others)})"
    if empty:
        reason += f"; no configuration fits {', '.join(e.spaces[0].family for e in empty)}"
    reason += f"; {note}" if note else _store(profile, results)
    return Decision(
        backend=best.backend,
        config=best.config,
        tier="predicted",
        reason=reason,
        profile=profile.name,
        predicted_us_per_step=float(best.predicted["time_us_per_step"]),
    )


# ---- what a layer calls ----------------------------------------------------------------------------


def _families() -> tuple[str, ...]:
    from tunekit.problem import FAMILIES

    return FAMILIES


def _why_not(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run on ``device``, else the reason (from tunekit.api)."""
    try:
        resolve_backend(backend, device)
    except BackendUnavailableError as error:
        return str(error)
    return None


def _registered(cell: Cell) -> bool:
    try:
        return get_cell(cell.name) is cell
    except ValueError:
        return False


def _profile(device: torch.device) -> GPUProfile:
    from tunekit.hardware import load_profile

    if device.type != "cuda":
        return load_profile(INTERPRETER_PROFILE)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _detected(index)


_DETECTED: dict[int, Any] = {}


def _detected(index: int) -> GPUProfile:
    from tunekit.hardware import detect_profile

    if index not in _DETECTED:
        _DETECTED[index] = detect_profile(index)
    return _DETECTED[index]


def choose(
    requested: str,
    config: Any,
    cell: Cell,
    *,
    batch: int,
    heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: torch.device,
    direction: str,
) -> Decision:
    """The decision for one shape. ``requested``: "auto", "reference" or a backend name;
    ``direction``: "both" when a gradient will be asked, else "forward".

    "auto" runs the reference on a CPU, for a dtype or an unregistered cell no kernel takes, and
    where no configuration of any runnable family fits (the reason says which); a named backend
    that cannot serve the shape raises ValueError (or BackendUnavailableError) saying why.
    """
    from tunekit.problem import Problem

    if requested == "reference":
        return Decision("reference", reason="backend='reference' was asked for")
    if requested not in known_backends():
        raise ValueError(f"backend: got {requested!r}, expected one of {known_backends()}")
    auto = requested == "auto"
    tuned_family = auto or requested in _families()

    def fallback(why: str) -> Decision:
        if auto:
            return Decision("reference", reason=f"auto fell back to the reference: {why}")
        raise ValueError(f"backend {requested!r} cannot serve this layer: {why}")

    if auto and device.type != "cuda":
        return Decision("reference", reason=f"tensors on {device}: the tuned kernels need a CUDA GPU")
    if not auto:
        reason = _why_not(requested, device)
        if reason is not None:
            raise BackendUnavailableError(reason)
    if not _registered(cell):
        return fallback(
            f"cell {cell.name!r} is not registered (the kernel backends load cells by name; "
            "tunekit.cells.register_cell makes it known)"
        )
    if not tuned_family:
        tier = None if config is None else "given"
        return Decision(requested, config, tier, f"backend {requested!r} was asked for (not a tuned family)")
    if dtype not in KERNEL_DTYPES:
        return fallback(f"dtype {dtype}: the tuned kernels take {', '.join(KERNEL_DTYPES.values())}")
    if config is not None:
        family = getattr(config, "family", None) if auto else requested
        if family is None:
            raise ValueError(
                "config: got a configuration without a family for backend='auto'; "
                "name the backend it is for (backend='triton-fused', ...) or pass a KernelConfig"
            )
        reason = _why_not(family, device)
        if reason is not None:
            raise BackendUnavailableError(reason)
        return Decision(family, config, tier="given", reason="the configuration passed as config=")
    families = tuple(f for f in _families() if _why_not(f, device) is None) if auto else (requested,)
    if not families:
        why = "; ".join(str(_why_not(f, device)) for f in _families())
        return fallback(f"no kernel family can run on {device}: {why}")
    try:
        problem = Problem(cell.name, batch, heads, head_dim, KERNEL_DTYPES[dtype], direction)
    except ValueError as error:
        return fallback(f"the shape is outside what the tuner takes ({error})")
    profile = _profile(device)
    from tunekit.tuning import NoFeasibleConfig

    try:
        decision = decide(profile, problem, families)
    except NoFeasibleConfig as error:
        if auto:
            return fallback(f"{error}")
        raise ValueError(
            f"backend {requested!r} cannot serve this layer: {error}\n{error.to_text()}"
        ) from error
    if device.type != "cuda":
        decision = replace(
            decision, reason=f"{decision.reason}; Triton's interpreter, tuned for {profile.name}"
        )
    unavailable = [str(_why_not(f, device)) for f in _families() if f not in families]
    if auto and unavailable:
        decision = replace(
            decision, reason=f"{decision.reason}; not available here: {'; '.join(unavailable)}"
        )
    return decision
