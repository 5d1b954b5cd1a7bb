"""Derive a cell's pointwise forward and backward from its declaration with SymPy.

Both come out as a *program*: an ordered list of ``(target, expression)`` assignments whose
temporaries (``_t0, _t1, …``) are SymPy's common subexpressions. The backward is the
vector-Jacobian product of the step: with incoming gradients ``ds_<st>_new`` it returns
``dwx_<g>``, ``dry_<g>``, ``db_<g>`` and ``ds_<st>`` for every state that carries a gradient.
No-gradient states (the sLSTM's stabilizer m) get no ``ds``, and their new value is wrapped in
:class:`~tunekit.cells.spec.no_grad` wherever the other states use it, so nothing flows through it.
Everything is cached per cell: the derivation of the four built-in cells takes well under a second.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import sympy

from tunekit.cells.spec import Cell, StepVars, no_grad

Program = list[tuple[str, sympy.Expr]]


def forward_inputs(cell: Cell) -> list[str]:
    """Names the forward reads, in order: ``wx_<g>``, ``ry_<g>``, ``b_<g>``, ``s_<st>``."""
    return (
        [f"wx_{g}" for g in cell.w_gates]
        + [f"ry_{g}" for g in cell.r_gates]
        + [f"b_{g}" for g in cell.b_gates]
        + [f"s_{st}" for st in cell.states]
    )


def forward_outputs(cell: Cell) -> list[str]:
    """Names the forward assigns: ``s_<st>_new`` for every state."""
    return [f"s_{st}_new" for st in cell.states]


def backward_inputs(cell: Cell) -> list[str]:
    """The forward inputs plus ``ds_<st>_new`` for every state with a gradient."""
    return forward_inputs(cell) + [f"ds_{st}_new" for st in cell.grad_states]


def backward_outputs(cell: Cell) -> list[str]:
    """``dwx_<g>``, ``dry_<g>``, ``db_<g>``, then ``ds_<st>`` for every state with a gradient."""
    return (
        [f"dwx_{g}" for g in cell.w_gates]
        + [f"dry_{g}" for g in cell.r_gates]
        + [f"db_{g}" for g in cell.b_gates]
        + [f"ds_{st}" for st in cell.grad_states]
    )


def step_vars(cell: Cell) -> StepVars:
    """The real-valued symbols the cell's step function is called with."""

    def slots(prefix: str, names: tuple[str, ...]) -> dict[str, sympy.Symbol]:
        return {n: sympy.Symbol(f"{prefix}_{n}", real=True) for n in names}

    return StepVars(
        wx=slots("wx", cell.w_gates),
        ry=slots("ry", cell.r_gates),
        b=slots("b", cell.b_gates),
        s=slots("s", cell.states),
    )


@functools.cache
def forward_expressions(cell: Cell) -> dict[str, sympy.Expr]:
    """``{state: new value}`` from the step, with no-gradient states detached where reused."""
    variables = step_vars(cell)
    result = cell.step(variables)
    if not hasattr(result, "keys") or set(result) != set(cell.states):
        got = sorted(result) if hasattr(result, "keys") else type(result).__name__
        raise ValueError(
            f"cell {cell.name!r}: step returned {got}, expected a mapping with keys {cell.states}"
        )
    known = {
        sym for group in (variables.wx, variables.ry, variables.b, variables.s) for sym in group.values()
    }
    exprs: dict[str, sympy.Expr] = {}
    for st in cell.states:
        expr = sympy.sympify(result[st])
        stray = sorted(str(s) for s in expr.free_symbols - known)
        if stray:
            raise ValueError(
                f"cell {cell.name!r}: new value of state {st!r} uses unknown symbols {stray}; "
                f"expected only wx/ry/b/s symbols of StepVars"
            )
        exprs[st] = expr
    # a no-gradient state is a constant for everyone else: detach each occurrence of its new value
    for st in cell.no_grad_states:
        value = exprs[st]
        if isinstance(value, (sympy.Add, sympy.Mul, sympy.Pow)):
            # SymPy merges sums, products and powers into the expressions that use them
            # (exp(i - (a + b)) becomes exp(i - a - b)), so the occurrences could not be found again
            raise ValueError(
                f"cell {cell.name!r}: the new value of no-gradient state {st!r} is {value}; expected it "
                f"wrapped as no_grad(...) inside step (SymPy merges a bare {type(value).__name__} into "
                "the expressions that use it, and its gradient could not be cut there)"
            )
    detach = {
        exprs[st]: no_grad(exprs[st])
        for st in cell.no_grad_states
        if not exprs[st].is_Atom and not isinstance(exprs[st], no_grad)
    }
    for st in cell.states:
        if st in cell.no_grad_states:
            exprs[st] = no_grad(exprs[st]) if not isinstance(exprs[st], no_grad) else exprs[st]
        elif detach:
            exprs[st] = exprs[st].xreplace(detach)
    return exprs


@functools.cache
def backward_expressions(cell: Cell) -> dict[str, sympy.Expr]:
    """``{output name: expression}`` of the pointwise vector-Jacobian product."""
    variables = step_vars(cell)
    exprs = forward_expressions(cell)
    incoming = {st: sympy.Symbol(f"ds_{st}_new", real=True) for st in cell.grad_states}
    wrt = (
        [(f"dwx_{g}", variables.wx[g]) for g in cell.w_gates]
        + [(f"dry_{g}", variables.ry[g]) for g in cell.r_gates]
        + [(f"db_{g}", variables.b[g]) for g in cell.b_gates]
        + [(f"ds_{st}", variables.s[st]) for st in cell.grad_states]
    )
    return {
        name: sympy.Add(*(incoming[st] * sympy.diff(exprs[st], symbol) for st in cell.grad_states))
        for name, symbol in wrt
    }


def _temporaries(start: int = 0) -> Iterator[sympy.Symbol]:
    index = start
    while True:
        yield sympy.Symbol(f"_t{index}", real=True)
        index += 1


def _inline_conditions(temps: Program) -> tuple[Program, dict[sympy.Symbol, sympy.Basic]]:
    """Put boolean temporaries back into their users: a condition stays inside its select."""
    kept: Program = []
    conditions: dict[sympy.Symbol, sympy.Basic] = {}
    for name, expr in temps:
        expr = expr.xreplace(conditions)
        if isinstance(expr, sympy.logic.boolalg.Boolean):
            conditions[sympy.Symbol(name, real=True)] = expr
        else:
            kept.append((name, expr))
    return kept, conditions


def _hoist_power_bases(program: Program, counter: Iterator[sympy.Symbol]) -> Program:
    """Give every non-atomic base of ``x**n`` (|n| >= 2) its own temporary, so printers never repeat it."""
    out: Program = []
    for name, expr in program:
        hoisted: dict[sympy.Expr, sympy.Symbol] = {}
        for power in sorted(expr.atoms(sympy.Pow), key=sympy.default_sort_key):
            if power.exp.is_Integer and abs(power.exp) >= 2 and not power.base.is_Atom:
                hoisted.setdefault(power.base, next(counter))
        for base, temp in hoisted.items():
            out.append((str(temp), base))
        if hoisted:
            expr = expr.xreplace(
                {p: hoisted[p.base] ** p.exp for p in expr.atoms(sympy.Pow) if p.base in hoisted}
            )
        out.append((name, expr))
    return out


def _program(outputs: dict[str, sympy.Expr]) -> Program:
    """Common-subexpression elimination over all outputs; temporaries first, outputs in order."""
    names = list(outputs)
    temps, reduced = sympy.cse([outputs[n] for n in names], symbols=_temporaries(), order="canonical")
    program, conditions = _inline_conditions([(str(sym), expr) for sym, expr in temps])
    program += [(n, expr.xreplace(conditions)) for n, expr in zip(names, reduced, strict=True)]
    return _hoist_power_bases(program, _temporaries(len(temps)))


@functools.cache
def forward_program(cell: Cell) -> Program:
    """The forward as assignments: temporaries, then ``s_<st>_new`` in state order."""
    exprs = forward_expressions(cell)
    return _program({f"s_{st}_new": exprs[st] for st in cell.states})


@functools.cache
def backward_program(cell: Cell) -> Program:
    """The backward as assignments: temporaries, then the outputs of :func:`backward_outputs`."""
    return _program(backward_expressions(cell))
