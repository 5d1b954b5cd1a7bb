"""A tuning record, its three tiers of trust, how a new write merges into a stored record, and
which stored record wins a lookup.

Tiers, from least to most trusted: ``predicted`` (the cost model), ``compiler-verified`` (compiled for the
target architecture offline: registers, spills and shared memory read from the compiler and checked
against the profile), ``measured`` (timed on a GPU after its numbers matched the reference). A
record's ``status`` is the verdict of its highest tier: ``ok``, ``rejected`` (the compiler found a
spill or a broken limit) or ``failed`` (wrong numbers, or the kernel did not run). Only ``ok``
records are ever chosen.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from tunekit.db.keys import RecordKey, key_for

__all__ = [
    "NOISE_FLOOR",
    "STATUSES",
    "TIERS",
    "Record",
    "choose",
    "choose_measured",
    "merge",
    "noise_band",
    "now",
    "predicted_record",
    "quantiles",
]

TIERS: tuple[str, ...] = ("predicted", "compiler-verified", "measured")
STATUSES: tuple[str, ...] = ("ok", "rejected", "failed")
# Two medians closer than this share of the faster one are a tie: CUDA-event timings of one
# kernel repeat within ~1% run to run on an idle GPU, so a smaller gap is noise. A noisier
# candidate widens the band to its own interquartile range (noise_band).
NOISE_FLOOR = 0.01


def now() -> str:
    """UTC time in ISO 8601, to the second (what records carry as updated_at)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else MappingProxyType(dict(value))


@dataclass(frozen=True)
class Record:
    """One configuration's stored knowledge: predicted, compiled and measured, as far as it got."""

    key: RecordKey
    params: Mapping[str, int]  # the tunables in the model's order (as KernelConfig.items)
    tier: str
    status: str = "ok"
    predicted: Mapping[str, float] = field(default_factory=dict)  # resources, cost terms, time_us_per_step
    binding_constraints: tuple[str, ...] = ()
    cost_model: str = ""  # CostConstants.digest of the constants that priced `predicted`
    model_rank: int | None = None  # place in the ranking of the run that wrote it (0: the model's best)
    compiled: Mapping[str, Any] | None = None  # compiler-verified: {"compiler", "kernels": [per entry]}
    samples_us: tuple[float, ...] = ()  # measured tier: µs per step, one per timed run
    measure: Mapping[str, Any] | None = None  # measured tier: steps, warmup, repeats, runner
    numerics: Mapping[str, Any] | None = None  # measured tier: passed, max_error, tolerance, detail
    note: str = ""  # why rejected or failed, in words
    updated_at: str = ""

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier: got {self.tier!r}, expected one of {list(TIERS)}")
        if self.status not in STATUSES:
            raise ValueError(f"status: got {self.status!r}, expected one of {list(STATUSES)}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "predicted", MappingProxyType(dict(self.predicted)))
        object.__setattr__(self, "binding_constraints", tuple(self.binding_constraints))
        object.__setattr__(self, "samples_us", tuple(float(s) for s in self.samples_us))
        for name in ("compiled", "measure", "numerics"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def name(self) -> str:
        """The configuration's canonical name."""
        return self.key.config_name

    @property
    def family(self) -> str:
        return self.key.family

    @property
    def tier_rank(self) -> int:
        """0 predicted, 1 compiler-verified, 2 measured."""
        return TIERS.index(self.tier)

    @property
    def predicted_us(self) -> float:
        """The model's µs per step (inf when the record has no prediction)."""
        return float(self.predicted.get("time_us_per_step", math.inf))

    @property
    def median_us(self) -> float | None:
        """Median measured µs per step, None before any timing."""
        return statistics.median(self.samples_us) if self.samples_us else None

    def quantiles(self) -> dict[str, float]:
        """min, q25, median, q75, max of the samples (empty before any timing)."""
        return quantiles(self.samples_us)

    def config(self) -> Any:
        """The record's tunekit.problem.KernelConfig (its cell must be registered here); ValueError
        if the fields do not give back the stored canonical name."""
        from tunekit.problem import KernelConfig, Problem

        k = self.key
        problem = Problem(k.cell, k.batch, k.heads, k.head_dim, k.dtype, k.direction)
        config = KernelConfig(k.family, problem, k.profile, tuple(self.params.items()))
        if config.name != k.config_name:
            raise ValueError(f"record: its fields name {config.name!r}, its key {k.config_name!r}")
        return config


def quantiles(samples: Sequence[float]) -> dict[str, float]:
    """min, q25, median, q75 and max of ``samples`` (inclusive method: exact at n = 1)."""
    if not samples:
        return {}
    values = sorted(samples)
    if len(values) == 1:
        q25 = q75 = values[0]
    else:
        q25, _, q75 = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": values[0], "q25": q25, "median": statistics.median(values), "q75": q75, "max": values[-1]}


def _plain_number(value: Any) -> int | float:
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def predicted_record(candidate: Any, profile: Any, rank: int, cost_model: str) -> Record:
    """The predicted-tier record of a ``tunekit.tuning.Candidate`` ranked ``rank`` in its run."""
    return Record(
        key=key_for(candidate.config, profile),
        params=candidate.config.params,
        tier="predicted",
        predicted={k: _plain_number(v) for k, v in candidate.predicted.items()},
        binding_constraints=tuple(candidate.binding_constraints),
        cost_model=cost_model,
        model_rank=rank,
        updated_at=now(),
    )


def merge(old: Record | None, new: Record) -> Record:
    """What is stored after writing ``new`` over ``old`` (same key): a write never lowers the tier
    or drops what a higher tier found; the latest prediction and compile replace older ones; a
    new measurement replaces the old one (samples, settings and numerics together)."""
    if old is None:
        return new
    if old.key != new.key:
        raise ValueError(f"merge: keys differ ({old.key} vs {new.key})")
    top = new if new.tier_rank >= old.tier_rank else old
    measured = new if new.tier == "measured" else old
    return replace(
        new,
        tier=top.tier,
        status=top.status,
        note=top.note,
        predicted=new.predicted or old.predicted,
        binding_constraints=new.binding_constraints if new.predicted else old.binding_constraints,
        cost_model=new.cost_model if new.predicted else old.cost_model,
        model_rank=new.model_rank if new.model_rank is not None else old.model_rank,
        compiled=new.compiled if new.compiled is not None else old.compiled,
        samples_us=measured.samples_us,
        measure=measured.measure,
        numerics=measured.numerics,
        updated_at=max(old.updated_at, new.updated_at),
    )


def noise_band(samples: Sequence[float]) -> float:
    """The relative gap below which another median ties with these samples' median."""
    q = quantiles(samples)
    if not q or q["median"] <= 0:
        return NOISE_FLOOR
    return max(NOISE_FLOOR, (q["q75"] - q["q25"]) / q["median"])


def _model_order(record: Record) -> tuple[float, float, str]:
    """The model's order: predicted time, then the rank tune gave it in its run (its tie-break, the
    solvers' deterministic order), then the canonical name."""
    rank = math.inf if record.model_rank is None else record.model_rank
    return record.predicted_us, rank, record.name


def choose_measured(records: Iterable[Record]) -> Record | None:
    """The measured winner: the fastest median; every candidate whose median lies within the
    fastest one's noise band ties with it, and ties go to the model's order (predicted time),
    then to the canonical name. The same records give the same winner in any order."""
    timed = [r for r in records if r.tier == "measured" and r.status == "ok" and r.samples_us]
    if not timed:
        return None
    fastest = min(timed, key=lambda r: (r.median_us, *_model_order(r)))
    limit = fastest.median_us * (1 + noise_band(fastest.samples_us))
    return min((r for r in timed if r.median_us <= limit), key=_model_order)


def choose(records: Iterable[Record], cost_model: str) -> Record | None:
    """The record a lookup returns: a measured winner if any; else the verified ``ok`` record the
    model predicts fastest; else the fastest predicted ``ok`` record priced by ``cost_model``
    (the constants in use: a prediction from other constants is stale)."""
    usable = [r for r in records if r.status == "ok"]
    winner = choose_measured(usable)
    if winner is not None:
        return winner
    verified = [r for r in usable if r.tier == "compiler-verified"]
    if verified:
        return min(verified, key=_model_order)
    predicted = [r for r in usable if r.tier == "predicted" and r.cost_model == cost_model]
    return min(predicted, key=_model_order) if predicted else None
