"""Strict kernel configurations: one check, derived from each family's constraint model.

A configuration reaches a kernel family's runtime as a :class:`~tunekit.problem.KernelConfig` (from
the tuner or the database) or as a mapping a user wrote (``{"block_b": 16, "num_warps": 4, ...}``).
:func:`check_config` accepts it only when

- it belongs to this call: a KernelConfig's family, cell, heads, head dim and dtype equal the
  call's, and its direction covers the call's ("both" covers everything). The batch may differ
  (a layer's last batch is often smaller): the kernels mask rows. A GRU configuration for an
  LSTM call is an error;
- every key is known: the family's tunables (the variables of its constraint model,
  :func:`tunekit.constraints.build_space`), the family's string options (:data:`OPTIONS`, e.g.
  triton-fused's ``dot_precision``) and the labels ``name`` (canonical-name characters; it names
  cache files) and ``profile``/``gpu`` (a hardware profile name). Anything else is an error naming
  the key and the known ones;
- every tunable is an integer (``16.9`` is an error, never truncated to 16; so are ``16.0``,
  ``"16"`` and ``True``) inside its variable's domain for the problem (a KernelConfig: the problem
  it was tuned for). A tunable whose domain has a single value may be omitted (it is implied), and
  so may one of :data:`IMPLIED` (its stated value);
- every option is one of its allowed strings.

Errors are ValueError naming the key, the value and what is allowed. Every family's runtime calls
:func:`check_config` before it launches; :func:`config_options` returns the checked string options.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from tunekit.problem import FAMILIES, KernelConfig, Problem

__all__ = ["IMPLIED", "LABELS", "OPTIONS", "call_problem", "check_config", "config_options"]

# Non-integer launch options per family: key -> (allowed values, default). A family adds its own here.
OPTIONS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    # tl.dot input_precision for float32 operands (templates/triton/fused_*.py.j2): exact IEEE
    # products, or TF32 tensor-core inputs (10-bit mantissa)
    "triton-fused": {"dot_precision": (("ieee", "tf32"), "ieee")},
    "cuda-alternating": {},
    "cuda-fused": {},
}
# Tunables a mapping may omit although their domain has several values: key -> the value meant.
IMPLIED: dict[str, dict[str, int]] = {
    # the backward's form: a mapping without it means the rows form (two copies of R), as before
    # the one-copy form existed (tunekit.constraints.triton_fused)
    "triton-fused": {"r_once": 0},
    "cuda-alternating": {},
    "cuda-fused": {},
}
# Keys that label a mapping rather than tune it.
LABELS = ("name", "profile", "gpu")
# The hardware profile that judges a mapping's domains when it names none (the interpreter's default).
DEFAULT_PROFILE = "a100"


# (family, problem, id(profile)) -> (profile, space): a runtime checks its configuration on every
# call, and building a space costs milliseconds; the profile is kept so its id stays its own
_SPACES: dict[tuple[str, Problem, int], tuple[Any, Any]] = {}
_SPACES_MAX = 256


def _space(family: str, problem: Problem, profile: Any) -> Any:
    """``build_space(family, problem, profile)``, memoised per profile object."""
    from tunekit.constraints import build_space

    key = (family, problem, id(profile))
    hit = _SPACES.get(key)
    if hit is None or hit[0] is not profile:
        if len(_SPACES) >= _SPACES_MAX:
            del _SPACES[next(iter(_SPACES))]
        hit = _SPACES[key] = (profile, build_space(family, problem, profile))
    return hit[1]


def _family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family: got {family!r}, expected one of {list(FAMILIES)}")
    return family


def _belongs(config: KernelConfig, family: str, problem: Problem) -> None:
    """A KernelConfig must have been tuned for this family, cell and shape."""
    mine, theirs = config.problem, problem
    if config.family != family:
        raise ValueError(
            f"config: {config.name} is a {config.family} configuration, expected one for {family}"
        )
    for field in ("cell", "heads", "head_dim", "dtype"):
        if getattr(mine, field) != getattr(theirs, field):
            raise ValueError(
                f"config: {config.name} was tuned for {field}={getattr(mine, field)!r}, this call has "
                f"{field}={getattr(theirs, field)!r}; tune for this problem or pass a matching configuration"
            )
    if mine.direction not in ("both", theirs.direction):
        raise ValueError(
            f"config: {config.name} was tuned for direction={mine.direction!r}, this call needs "
            f"{theirs.direction!r}; tune with direction='both' (training) or {theirs.direction!r}"
        )


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"config {key}: got {value!r} ({type(value).__name__}), expected an integer "
            "(values are never rounded or truncated)"
        )
    return int(value)


def _label(key: str, value: Any) -> str:
    from tunekit.cache import check_entry_name

    if key == "name":
        return check_entry_name(value, "config name")
    if not isinstance(value, str) or not value:
        raise ValueError(f"config {key}: got {value!r}, expected a hardware profile name such as 'a100'")
    return check_entry_name(value, f"config {key}")


def _profile(gpu: Any) -> Any:
    """A GPUProfile from a profile, a packaged name or alias, or the name of this machine's detected GPU."""
    from tunekit.hardware import GPUProfile, load_profile

    if isinstance(gpu, GPUProfile):
        return gpu
    try:
        return load_profile(gpu)
    except ValueError:
        import torch

        if isinstance(gpu, str) and torch.cuda.is_available():
            from tunekit.hardware_detect import detect_profile

            detected = detect_profile()
            if detected.name == gpu:  # a configuration tuned for this machine's unlisted GPU
                return detected
        raise


def check_config(config: Any, family: str, problem: Problem, *, gpu: Any = None) -> KernelConfig:
    """The KernelConfig that ``config`` stands for, after every check of the module docstring.

    Args:
        config: a KernelConfig or a mapping of tunables (plus options and labels).
        family: the kernel family that will run it (one of ``tunekit.problem.FAMILIES``).
        problem: the call's problem (cell, batch, heads, head_dim, dtype, direction).
        gpu: the profile (or name) whose model judges a mapping's domains; default the mapping's
            ``profile``/``gpu`` label, else ``"a100"``. A KernelConfig is judged on its own GPU.
    Returns:
        The KernelConfig (a mapping becomes one for ``problem``; implied tunables filled in).
    Raises:
        ValueError: naming the key and what is allowed.

    Example: ``check_config({"block_b": 16, "num_warps": 4, "num_stages": 1}, "triton-fused",
    Problem("lstm", batch=8, heads=1, head_dim=48, direction="both"))``.
    """
    _family(family)
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem")
    if isinstance(config, KernelConfig):
        _belongs(config, family, problem)
        space = _space(family, config.problem, _profile(gpu if gpu is not None else config.gpu))
        values: Mapping[str, Any] = config.params
        where = f"{config.problem.cell} {config.problem.tag} on {space.gpu.name}"
    elif isinstance(config, Mapping):
        unknown = [k for k in config if k not in LABELS and k not in OPTIONS[family]]
        for key in config:
            if not isinstance(key, str):
                raise ValueError(f"config: got the key {key!r} ({type(key).__name__}), expected names")
        labels = {k: _label(k, config[k]) for k in LABELS if k in config}
        named = labels.get("profile") or labels.get("gpu") or DEFAULT_PROFILE
        profile = _profile(gpu if gpu is not None else named)
        space = _space(family, problem, profile)
        unknown = [k for k in unknown if k not in space.tunables]
        if unknown:
            known = [*space.tunables, *OPTIONS[family], *LABELS]
            raise ValueError(f"config: unknown key {unknown[0]!r} for {family}; expected only {known}")
        values = {k: v for k, v in config.items() if k in space.tunables}
        config_options(config, family)
        where = f"{problem.cell} {problem.tag} on {profile.name}"
    else:
        raise ValueError(f"config: got {type(config).__name__}, expected a KernelConfig or a mapping")
    items = []
    for var in space.model.variables:
        if var.name not in space.tunables:
            continue
        if var.name not in values:
            if len(var.domain) == 1:
                items.append((var.name, var.domain.lo))
                continue
            implied = IMPLIED.get(family, {})
            if var.name in implied and implied[var.name] in var.domain:
                items.append((var.name, implied[var.name]))
                continue
            missing = [n for n in space.tunables if n not in values and len(space.model.var(n).domain) > 1]
            raise ValueError(f"config: missing {missing}; got keys {sorted(values)}")
        value = _integer(var.name, values[var.name])
        if value not in var.domain:
            raise ValueError(
                f"config {var.name}: got {value}, expected one of {list(var.domain.values)} "
                f"({var.domain!r}, the {family} model's domain for {where})"
            )
        items.append((var.name, value))
    if isinstance(config, KernelConfig):
        return config
    return KernelConfig(family, problem, space.gpu.name, tuple(items))


def config_options(config: Any, family: str) -> dict[str, str]:
    """The family's string options of ``config`` (a mapping's, or the defaults), each checked."""
    _family(family)
    given = config if isinstance(config, Mapping) else {}
    options = {}
    for key, (allowed, default) in OPTIONS[family].items():
        value = given.get(key, default)
        if value not in allowed:
            raise ValueError(f"config {key}: got {value!r}, expected one of {list(allowed)}")
        options[key] = value
    return options


def call_problem(cell: str, batch: int, heads: int, head_dim: int, dtype: str, training: bool) -> Problem:
    """The Problem a runtime call poses: direction "both" when a gradient may be taken, else "forward"."""
    return Problem(cell, batch, heads, head_dim, dtype, "both" if training else "forward")
