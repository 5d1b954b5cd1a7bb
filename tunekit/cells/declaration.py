"""The cell record: a cell's name, its gate slots and states, and its step function (DESIGN §3).

Kept apart from :mod:`tunekit.cells.spec` (the SymPy functions a step is written in) so that the
registry, the problem and the tuner, which need only the names and counts of slots and states,
load without SymPy; the step's SymPy runs only when code is derived from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars

__all__ = ["Cell", "StepFunction"]

StepFunction = Callable[["StepVars"], Mapping[str, Any]]


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A tuple of unique Python identifiers (they become variable names in printed code)."""
    if isinstance(value, str):
        raise ValueError(f"{what}: got the string {value!r}, expected a sequence of names")
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise ValueError(f"{what}: got {bad!r}, expected identifiers (they name variables in printed code)")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: got {names!r}, expected unique names")
    return names


@dataclass(frozen=True, eq=False)
class Cell:
    """One recurrent cell, declared once (DESIGN §3).

    ``r_gates``/``w_gates``/``b_gates`` name the slots of R, Wx and b in order (G_r, G_w, G_t);
    ``states[0]`` is the hidden output y that R multiplies; ``no_grad_states`` carry no gradient
    (their new value is detached wherever the other states use it). ``step`` maps
    :class:`StepVars` to ``{state: SymPy expression of its new value}``.
    """

    name: str
    r_gates: tuple[str, ...]
    w_gates: tuple[str, ...]
    b_gates: tuple[str, ...]
    states: tuple[str, ...]
    step: StepFunction = field(repr=False)
    no_grad_states: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name: got {self.name!r}, expected an identifier such as 'lstm'")
        for attr in ("r_gates", "w_gates", "b_gates", "states", "no_grad_states"):
            object.__setattr__(self, attr, _names(getattr(self, attr), attr))
        if not self.r_gates or not self.states:
            raise ValueError(
                f"cell {self.name!r}: got r_gates={self.r_gates}, states={self.states}; "
                "expected at least one each"
            )
        unknown = [st for st in self.no_grad_states if st not in self.states]
        if unknown or self.states[0] in self.no_grad_states:
            raise ValueError(
                f"no_grad_states: got {self.no_grad_states}, expected states of {self.states} "
                f"other than the hidden output {self.states[0]!r}"
            )
        if not callable(self.step):
            raise ValueError(f"step: got {type(self.step).__name__}, expected a function of StepVars")

    @property
    def grad_states(self) -> tuple[str, ...]:
        """States that receive a gradient (all but ``no_grad_states``)."""
        return tuple(st for st in self.states if st not in self.no_grad_states)

    def forward_code(self, lang: str) -> list[tuple[str, str]]:
        """(target, expression) assignments computing every ``s_<st>_new``, printed for ``lang``."""
        from tunekit.cells.printers import printed_code

        return printed_code(self, "forward", lang)

    def backward_code(self, lang: str) -> list[tuple[str, str]]:
        """(target, expression) assignments of ``dwx_<g>``, ``dry_<g>``, ``db_<g>``, ``ds_<st>``."""
        from tunekit.cells.printers import printed_code

        return printed_code(self, "backward", lang)

    def __repr__(self) -> str:
        return (
            f"Cell({self.name!r}, r_gates={self.r_gates}, w_gates={self.w_gates}, "
            f"b_gates={self.b_gates}, states={self.states}, no_grad_states={self.no_grad_states})"
        )
