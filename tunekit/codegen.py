"""Render kernel templates (``templates/triton/*.j2``, ``templates/cuda/*.j2``) from a cell's declaration
and a configuration.

Rendering is a pure function: ``render(spec, config) -> str``. Jinja decides the kernel's structure
(which gates and states exist, unrolled per gate and state, the cell's printed pointwise code);
sizes (``BLOCK_B``, ``D``, ``D_PAD``) stay ``tl.constexpr`` arguments of the kernel. The
configuration only names the generated file (its header carries the configuration's canonical
name, the hardware profile and the tunekit version).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import jinja2

import tunekit

# kernel role -> template path inside the ``tunekit.templates`` package
TEMPLATES: dict[str, str] = {
    "forward": "triton/fused_forward.py.j2",
    "backward": "triton/fused_backward.py.j2",
}

# kernel role -> name of the @triton.jit function the template defines
KERNEL_NAMES: dict[str, str] = {"forward": "fused_forward", "backward": "fused_backward"}


class CellLike(Protocol):
    """What the templates read from a cell declaration (see docs/interfaces.md, Cells)."""

    name: str
    r_gates: tuple[str, ...]
    w_gates: tuple[str, ...]
    b_gates: tuple[str, ...]
    states: tuple[str, ...]
    no_grad_states: tuple[str, ...]

    def forward_code(self, lang: str) -> list[tuple[str, str]]: ...

    def backward_code(self, lang: str) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class KernelSpec:
    """Which kernel to render: a cell declaration and a role ("forward" or "backward")."""

    cell: CellLike
    role: str

    def __post_init__(self) -> None:
        if self.role not in TEMPLATES:
            raise ValueError(f"role: got {self.role!r}, expected one of {sorted(TEMPLATES)}")


def _load_template(name: str) -> tuple[str, str, Any]:
    """Jinja loader over package data, so templates are found in editable installs and wheels."""
    path = resources.files("tunekit.templates").joinpath(name)
    if not path.is_file():
        raise jinja2.TemplateNotFound(name)
    return path.read_text(encoding="utf-8"), str(path), lambda: True


@functools.cache
def environment() -> jinja2.Environment:
    """The strict Jinja environment every template is rendered with."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def describe_config(config: Any) -> tuple[str, str]:
    """(canonical name, hardware profile) of a KernelConfig, a mapping, or None for the header."""
    if config is None:
        return "untuned", "none"
    if isinstance(config, Mapping):
        name = config.get("name") or "-".join(f"{k}{config[k]}" for k in sorted(config))
        return str(name), str(config.get("profile", config.get("gpu", "none")))
    name = getattr(config, "name", None)
    if name is None:
        raise ValueError(f"config: got {type(config).__name__}, expected a KernelConfig, a mapping or None")
    profile = getattr(config, "profile", None) or getattr(config, "gpu", None) or "none"
    return str(name), str(getattr(profile, "name", profile))


def _prelude() -> str:
    from tunekit.cells.printers import TRITON_PRELUDE

    return TRITON_PRELUDE


def _check_code(cell: CellLike, role: str, code: list[tuple[str, str]], needed: list[str]) -> None:
    """The printed code must assign every name the template reads after it."""
    assigned = {target for target, _ in code}
    missing = [name for name in needed if name not in assigned]
    if missing:
        raise ValueError(
            f"cell {cell.name!r}: its {role} code does not assign {missing}; "
            "expected every output named in docs/interfaces.md (Cells)"
        )


def cell_context(cell: CellLike, lang: str, backward: bool) -> dict[str, Any]:
    """A cell's structure and its printed pointwise code in ``lang`` ("triton" or "cuda"), checked:
    what every kernel template of every family reads about the cell."""
    states = list(cell.states)
    grad_states = [st for st in states if st not in cell.no_grad_states]
    forward_code = list(cell.forward_code(lang))
    _check_code(cell, "forward", forward_code, [f"s_{st}_new" for st in states])
    backward_code: list[tuple[str, str]] = []
    if backward:
        backward_code = list(cell.backward_code(lang))
        needed = [f"dwx_{g}" for g in cell.w_gates] + [f"dry_{g}" for g in cell.r_gates]
        needed += [f"db_{g}" for g in cell.b_gates] + [f"ds_{st}" for st in grad_states]
        _check_code(cell, "backward", backward_code, needed)
    return {
        "cell": cell.name,
        "r_gates": list(cell.r_gates),
        "w_gates": list(cell.w_gates),
        "b_gates": list(cell.b_gates),
        "states": states,
        "grad_states": grad_states,
        "hidden": states[0],
        "forward_code": forward_code,
        "backward_code": backward_code,
    }


def header_context(template: str, kernel: str, config: Any) -> dict[str, Any]:
    """The generated-file header's fields: template, kernel role, configuration, profile, version."""
    config_name, profile = describe_config(config)
    return {
        "kernel": kernel,
        "template": template,
        "config_name": config_name,
        "profile": profile,
        "version": tunekit.__version__,
    }


def template_context(spec: KernelSpec, config: Any) -> dict[str, Any]:
    """Everything a triton-fused template reads: cell structure, printed code, header fields."""
    context = cell_context(spec.cell, "triton", backward=spec.role == "backward")
    context |= header_context(TEMPLATES[spec.role].split("/", 1)[1], spec.role, config)
    return context | {"prelude": _prelude()}


def render_template(name: str, context: Mapping[str, Any]) -> str:
    """Render any template under ``templates/`` (e.g. ``"cuda/fused_forward.cu.j2"``), strictly.

    CUDA templates include ``cuda/header.cu.j2`` (it reads the :func:`header_context` fields) and
    take the printed code from :func:`cell_context` with ``lang="cuda"``."""
    return environment().get_template(name).render(**context)


def render(spec: KernelSpec, config: Any = None) -> str:
    """Source of one generated kernel module (Python/Triton), starting with its header."""
    template = environment().get_template(TEMPLATES[spec.role])
    return template.render(**template_context(spec, config))
