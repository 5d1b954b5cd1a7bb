"""``tunekit generate``: a tuned kernel as a self-contained Python package for another project.

The package holds the rendered kernel sources (a Triton module; for the CUDA families the ``.cu``
sources, ``tk_cuda.cuh`` and prebuilt cubins for the profile's architecture), a loader rendered
from ``templates/generate/*.j2`` that exposes ``rnn(Wx, R, b, states=None)`` with tunekit's
functional layouts and a ``Layer`` nn.Module, a README (configuration, profile, versions, trust
tier, how to regenerate) and a manifest with every file's SHA-256. It imports torch and triton
(or cuda.core), never tunekit.

Flow: :func:`choose` picks the configuration (``tunekit.layer_backend.decide``: the seam where the
tuning database answers, else the cost model), :func:`package_files` renders every file (a pure
function of the choice: no timestamps, sorted everything, so generating twice gives the same
bytes), :func:`generate` writes them with :func:`tunekit.generate_tree.write_tree` (a temporary
sibling folder renamed into place; an existing folder is replaced only when it holds a previous
tunekit package and nothing else).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tunekit
from tunekit.generate_package import MANIFEST, check_replaceable, manifest_bytes, package_name
from tunekit.generate_tree import write_tree
from tunekit.hardware import GPUProfile, load_profile
from tunekit.kernels.host import literal
from tunekit.problem import FAMILIES, KernelConfig, Problem

__all__ = ["Choice", "Generated", "choose", "generatable_families", "generate", "package_files"]


@dataclass(frozen=True)
class Choice:
    """The configuration a package is generated for, with what the model predicts and why it won."""

    problem: Problem
    profile: GPUProfile
    requested: str  # the --backend asked for ("auto" or a family)
    config: KernelConfig
    tier: str  # "predicted", "compiler-verified" or "measured"
    reason: str
    predicted: Mapping[str, Any]  # resources, cost terms (µs) and time_us_per_step
    binding_constraints: tuple[str, ...]

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def package(self) -> str:
        """The package's Python name, from the canonical name's characters only."""
        return package_name(self.config.name)


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` wrote."""

    path: Path
    choice: Choice
    files: tuple[str, ...]  # relative paths, sorted (the manifest included)
    replaced: bool  # a previous package was in the folder


class Variant(Protocol):
    """How one kernel family's package is made: its kernel files and its runtime modules."""

    runtime_modules: tuple[str, ...]  # what the package imports besides torch (README, versions)

    def kernel_files(self, choice: Choice) -> dict[str, bytes]:
        """Kernel sources (and binaries) by relative path."""
        ...

    def context(self, choice: Choice) -> dict[str, Any]:
        """What the templates read besides the shared context (``config``; ``literals``: values
        the generated Python holds, rendered as Python literals; ``versions``: tools beyond the
        runtime modules)."""
        ...

    def runtime_files(self, context: dict[str, Any]) -> dict[str, bytes]:
        """``_runtime.py`` (it defines ``rnn``) and any module it imports, rendered."""
        ...


def _variant(family: str) -> Variant:
    if family == "triton-fused":
        from tunekit.generate_triton import TritonVariant

        return TritonVariant()
    from tunekit.generate_cuda import CudaVariant

    return CudaVariant(family)


def _missing(family: str) -> str | None:
    """None when this tunekit can generate ``family``, else why not."""
    if family == "triton-fused":
        return None
    from tunekit.kernels import CUDA_FAMILIES

    module = CUDA_FAMILIES[family]
    if importlib.util.find_spec(module) is None:
        return f"no {family} kernels in this tunekit yet ({module} is missing)"
    from tunekit.generate_cuda import packaging_gap

    return packaging_gap(family)


def generatable_families() -> tuple[str, ...]:
    """The kernel families whose kernels this tunekit can package."""
    return tuple(f for f in FAMILIES if _missing(f) is None)


def left_out_note(backend: str) -> str | None:
    """For ``backend="auto"``: which families this tunekit cannot package, and why; else None."""
    if backend != "auto":
        return None
    reasons = [str(_missing(f)) for f in FAMILIES if _missing(f) is not None]
    return "; ".join(reasons) or None


def _families(backend: str) -> tuple[str, ...]:
    from tunekit.tuning import check_backend

    check_backend(backend)  # ValueError naming the backends
    if backend != "auto":
        why = _missing(backend)
        if why is not None:
            others = ", ".join(generatable_families())
            raise ValueError(f"backend {backend!r}: {why}; use --backend auto or one of: {others}")
        return (backend,)
    return generatable_families()


def _stored(profile: GPUProfile, problem: Problem, families: tuple[str, ...], db: Any) -> tuple[Any, str]:
    """(the tuning database's most trusted best record or None, a note when the default database
    could not be read). No database file yet gives None; nothing is created or written. A database
    named explicitly that cannot be read raises (the user asked for it)."""
    from tunekit.db import TuningDBError, best

    try:
        return best(profile, problem, families, db=db), ""
    except (TuningDBError, OSError, ValueError) as error:
        if db is not None:
            raise
        return None, f"the tuning database could not be read ({error})"


def _modelled(profile: GPUProfile, problem: Problem, families: tuple[str, ...]) -> tuple[KernelConfig, str]:
    """The cost model's fastest configuration among ``families`` and why (nothing is stored: a
    package is a reader of the database). NoFeasibleConfig when no family has one."""
    from tunekit.tuning import NoFeasibleConfig, tune

    results, empty = [], []
    for family in families:
        try:
            results.append(tune(problem, profile, backend=family, top=1))
        except NoFeasibleConfig as error:
            empty.append(error)
    if not results:
        raise NoFeasibleConfig(problem, profile, [space for error in empty for space in error.spaces])
    best = min(results, key=lambda r: (float(r.predicted["time_us_per_step"]), r.config.name))
    reason = f"the cost model's fastest configuration on {profile.name} among {', '.join(families)}"
    others = [f"{r.backend} {float(r.predicted['time_us_per_step']):.4g}" for r in results if r is not best]
    if others:
        reason += f" (the others' best, µs per step: {', '.join(others)})"
    if empty:
        reason += f"; no configuration fits {', '.join(e.spaces[0].family for e in empty)}"
    return best.config, reason


def _record_reason(record: Any, profile: GPUProfile) -> str:
    if record.tier == "measured":
        return (
            f"the fastest configuration timed on a GPU ({profile.name}) in the tuning database: median "
            f"{record.median_us:.4g} µs per step over {len(record.samples_us)} runs (the model predicted "
            f"{record.predicted_us:.4g})"
        )
    if record.tier == "compiler-verified":
        return (
            f"the tuning database's fastest predicted configuration that compiled for {profile.sm} "
            "within the model's resources (no spills, no broken limit)"
        )
    return "the tuning database's record of the cost model's fastest configuration"


def choose(problem: Problem, gpu: str | GPUProfile, backend: str = "auto", *, db: Any = None) -> Choice:
    """The configuration to package: the tuning database's most trusted best record (measured, then
    compiler-verified, then predicted) among the families this tunekit can package
    (``backend="auto"``) or of one family; the cost model's best when nothing is stored.

    ``db``: a database path, an open TuningDB, or None for the default (``$TUNEKIT_DB`` or the
    user's cache); a missing file is not created. Raises ValueError for a backend that cannot be
    packaged or ``direction="backward"`` (a package needs the forward kernel), and
    :class:`tunekit.tuning.NoFeasibleConfig` when nothing fits.
    """
    from tunekit.constraints import build_space
    from tunekit.cost import estimate
    from tunekit.tuning import binding_constraints

    if not isinstance(problem, Problem):
        raise ValueError(f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem")
    if problem.direction == "backward":
        raise ValueError(
            "direction: got 'backward', expected 'forward' (inference) or 'both' (training): "
            "a package needs the forward kernel to compute the states the backward reads"
        )
    profile = load_profile(gpu)
    families = _families(backend)
    record, note = _stored(profile, problem, families, db)
    if record is not None:
        config, tier, reason = record.config(), record.tier, _record_reason(record, profile)
    else:
        (config, reason), tier = _modelled(profile, problem, families), "predicted"
        reason += f"; {note}" if note else ""
    if not isinstance(config, KernelConfig):
        raise ValueError(f"the chosen configuration is a {type(config).__name__}, expected a KernelConfig")
    space = build_space(config.family, problem, profile)
    assignment = config.params
    predicted: dict[str, Any] = dict(space.resources(assignment))
    cost = estimate(space, assignment)
    predicted.update((k, v) for k, v in cost.terms().items() if k != "total_us_per_step")
    predicted["time_us_per_step"] = cost.total_us_per_step
    left_out = left_out_note(backend)
    if left_out:
        reason += f"; left out: {left_out}"
    return Choice(
        problem=problem,
        profile=profile,
        requested=backend,
        config=config,
        tier=tier,
        reason=reason,
        predicted=predicted,
        binding_constraints=binding_constraints(space, assignment),
    )


# ---- rendering ----------------------------------------------------------------------------------


def _readable(value: Any) -> str:
    """A predicted number for people: integers with separators, others to 4 significant digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def regenerate_command(choice: Choice) -> str:
    """The command that writes this package again (the chosen family named, so it is reproducible)."""
    p = choice.problem
    return (
        f"tunekit generate --gpu {choice.profile.name} --cell {p.cell} --head-dim {p.head_dim} "
        f"--heads {p.heads} --batch {p.batch} --dtype {p.dtype} --direction {p.direction} "
        f"--backend {choice.family} --out <this folder>"
    )


def _versions(variant: Variant, extra: Mapping[str, str]) -> dict[str, str]:
    import torch

    versions = {"tunekit": tunekit.__version__, "torch": str(torch.__version__).split("+")[0]}
    for module in variant.runtime_modules:
        found = importlib.import_module(module)
        versions[module] = str(getattr(found, "__version__", "unknown"))
    return versions | dict(extra)


def _context(choice: Choice, variant: Variant) -> dict[str, Any]:
    from tunekit.cells import get_cell

    problem, cell = choice.problem, get_cell(choice.problem.cell)
    extra = dict(variant.context(choice))
    versions = _versions(variant, extra.pop("versions", {}))
    values = {
        "name": choice.config.name,
        "family": choice.family,
        "cell": problem.cell,
        "gpu": choice.profile.name,
        "arch": choice.profile.sm,
        "problem": {
            "batch": problem.batch,
            "heads": problem.heads,
            "head_dim": problem.head_dim,
            "dtype": problem.dtype,
            "direction": problem.direction,
        },
        "config": choice.config.params,
        "predicted": dict(choice.predicted),
        "tier": choice.tier,
        "versions": versions,
        "r_gates": tuple(cell.r_gates),
        "w_gates": tuple(cell.w_gates),
        "b_gates": tuple(cell.b_gates),
        "states": tuple(cell.states),
        "dtype": problem.dtype,
        "direction": problem.direction,
    }
    context: dict[str, Any] = {
        "version": tunekit.__version__,
        "choice": choice,
        "name": choice.config.name,
        "package": choice.package,
        "family": choice.family,
        "gpu": choice.profile.name,
        "gpu_display": choice.profile.display_name,
        "arch": choice.profile.sm,
        "profile": choice.profile,
        "problem": problem,
        "cell": cell,
        "training": problem.direction == "both",
        "params": sorted(choice.config.params.items()),
        "predicted": [(key, _readable(value)) for key, value in sorted(choice.predicted.items())],
        "time_us_per_step": float(choice.predicted["time_us_per_step"]),
        "binding_constraints": list(choice.binding_constraints),
        "tier": choice.tier,
        "reason": choice.reason,
        "requested": choice.requested,
        "versions": sorted(versions.items()),
        "regenerate": regenerate_command(choice),
        "runtime_modules": list(variant.runtime_modules),
    }
    values |= extra.pop("literals", {})
    context |= extra
    context["py"] = {key: literal(value) for key, value in values.items()}
    return context


def package_files(choice: Choice) -> dict[str, bytes]:
    """Every file of the package by relative path, the manifest included (a pure function)."""
    from tunekit.codegen import render_template

    variant = _variant(choice.family)
    context = _context(choice, variant)
    files = dict(variant.kernel_files(choice))
    rendered = {
        "__init__.py": "generate/init.py.j2",
        "_config.py": "generate/config.py.j2",
        "_layer.py": "generate/layer.py.j2",
    }
    for path, template in rendered.items():
        files[path] = render_template(template, context).encode("utf-8")
    files |= variant.runtime_files(context)
    context["files"] = sorted(files)
    files["README.md"] = render_template("generate/README.md.j2", context).encode("utf-8")
    manifest = {
        "name": choice.config.name,
        "package": choice.package,
        "family": choice.family,
        "gpu": choice.profile.name,
        "arch": choice.profile.sm,
        "config": choice.config.as_dict(),
        "tier": choice.tier,
        "reason": choice.reason,
        "predicted": dict(choice.predicted),
        "versions": dict(context["versions"]),
        "regenerate": context["regenerate"],
    }
    files[MANIFEST] = manifest_bytes(manifest, files)
    return files


def generate(
    problem: Problem, gpu: str | GPUProfile, out: str | os.PathLike, backend: str = "auto", *, db: Any = None
) -> Generated:
    """Tune ``problem`` for ``gpu`` and write the package into folder ``out``.

    Args:
        problem: the layer's shape (``direction="both"`` packages the backward kernel too).
        gpu: a hardware profile name, alias or GPUProfile.
        out: the package folder: missing, empty, or holding a previous tunekit package and nothing
            else (it is then replaced); anything else is refused with a ValueError.
        backend: "auto" (the best family this tunekit can package) or one family.
        db: the tuning database to consult (see :func:`choose`).

    Returns:
        :class:`Generated`: the folder, the choice and the files written.

    Example::

        generate(Problem("lstm", batch=16, heads=4, head_dim=64, direction="both"), "h100", "kernels")
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder; choose a folder path")
    replaced = out.is_dir() and any(out.iterdir())
    if replaced:
        check_replaceable(out)  # before tuning and rendering: fail fast
    choice = choose(problem, gpu, backend, db=db)
    files = package_files(choice)
    write_tree(out, files, may_replace=check_replaceable)
    return Generated(path=out, choice=choice, files=tuple(sorted(files)), replaced=replaced)
