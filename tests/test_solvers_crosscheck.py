"""Property tests: on random small models, native, cpsat, vector and brute force give the same answers.

Brute force is the referee (DESIGN §4, STYLE 6): the same solution sets, the same top-k lists,
and explanations that really conflict on their own and are irreducible.
"""

from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunekit.solvers import (
    AnyOf,
    Divides,
    DivisorsOf,
    Implies,
    Max,
    Min,
    Model,
    Multiples,
    Not,
    PowersOfTwo,
    Range,
    Values,
    brute,
    ceil_div,
    enumerate_all,
    explain,
    floor_div,
    native,
    numeric,
    round_up,
    solve,
    top_k,
    vector,
)

BACKENDS = ["native", "cpsat", "vector"]
# ~60 random models per property keeps this file near 20 s on one core (cpsat dominates).
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Domains stay at <= 6 values and models at <= 4 variables, so brute force checks <= 1296 points.
domains = st.one_of(
    st.builds(lambda lo, w: Range(lo, lo + w), st.integers(-4, 6), st.integers(0, 5)),
    st.builds(Values, st.lists(st.integers(-6, 12), min_size=1, max_size=5)),
    st.builds(lambda j: PowersOfTwo(1, 2**j), st.integers(0, 5)),
    st.builds(DivisorsOf, st.sampled_from([1, 6, 8, 12, 18, 20])),
    st.builds(
        lambda s, lo, m: Multiples(s, lo, lo + s * m),
        st.integers(1, 4),
        st.integers(-4, 4),
        st.integers(1, 4),
    ),
)

UNARY = [
    lambda a, d: ceil_div(a, d),
    lambda a, d: floor_div(a, d),
    lambda a, d: round_up(a, d),
    lambda a, d: a % d,
]
BINARY = [
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: Min(a, b),
    lambda a, b: Max(a, b),
]
OPS = ["<=", "<", ">=", ">", "==", "!="]


@st.composite
def expressions(draw, variables, depth=2):
    """A random expression over ``variables`` (a leaf, or one operation on smaller expressions)."""
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(variables)) if draw(st.integers(0, 3)) else draw(st.integers(-3, 5))
    if draw(st.booleans()):
        op = draw(st.sampled_from(UNARY))
        positive = [v for v in variables if v.domain.lo >= 1]  # divisors must be >= 1 everywhere
        kind = draw(st.sampled_from(["var", "int", "expr"]))
        if kind == "var" and positive:
            divisor = draw(st.sampled_from(positive))
        elif kind == "expr":  # division by an expression that is >= 1 everywhere
            divisor = Max(draw(expressions(variables, depth - 1)), 1)
        else:
            divisor = draw(st.integers(1, 4))
        return op(draw(expressions(variables, depth - 1)), divisor)
    op = draw(st.sampled_from(BINARY))
    return op(draw(expressions(variables, depth - 1)), draw(expressions(variables, depth - 1)))


def _compare(a, op, b):
    return {"<=": a <= b, "<": a < b, ">=": a >= b, ">": a > b, "==": a == b, "!=": a != b}[op]


@st.composite
def constraints(draw, variables, depth=1):
    """A random constraint: a comparison, a divisibility, or (nested) Implies / AnyOf / Not."""
    kind = draw(st.sampled_from(["cmp", "cmp", "divides"] + (["implies", "any", "not"] if depth else [])))
    if kind == "cmp":
        return _compare(
            draw(expressions(variables)), draw(st.sampled_from(OPS)), draw(expressions(variables))
        )
    if kind == "divides":
        a = draw(st.sampled_from(variables)) if draw(st.booleans()) else draw(st.integers(0, 4))
        return Divides(a, draw(expressions(variables, 1)))
    parts = [draw(constraints(variables, depth - 1)) for _ in range(2)]
    if kind == "implies":
        return Implies(*parts)
    return AnyOf(*parts) if kind == "any" else Not(parts[0])


@st.composite
def models(draw, objective=None):
    m = Model("random")
    variables = [m.int_var(f"v{i}", draw(domains)) for i in range(draw(st.integers(2, 4)))]
    for i in range(draw(st.integers(1, 4))):
        m.add(f"c{i}", draw(constraints(variables)), why="random")
    if objective is None:
        objective = draw(st.sampled_from(["none", "min", "max"]))
    if objective != "none":
        (m.minimize if objective == "min" else m.maximize)(draw(expressions(variables)))
    return m


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(model=models(objective="none"))
def test_solution_sets_equal_brute_force(backend, model):
    assert enumerate_all(model, backend=backend) == enumerate_all(model, backend="brute")


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(model=models(), k=st.integers(1, 4))
def test_top_k_and_optimum_equal_brute_force(backend, model, k):
    expected = top_k(model, k, backend="brute")
    assert top_k(model, k, backend=backend) == expected
    found = solve(model, backend=backend)
    if not expected:
        assert found is None
    elif model.objective is not None:
        assert found == expected[0]
    else:
        assert model.check(found) == []


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(model=models(objective="none"))
def test_explanation_conflicts_on_its_own_and_is_irreducible(backend, model):
    names = explain(model, backend=backend)
    feasible = bool(brute.solutions(model, limit=1))
    assert (names == []) is feasible
    if feasible:
        return
    chosen = [model.constraint(n) for n in names]
    assert brute.solutions(model, chosen, limit=1) == [], f"{names} do not conflict on their own"
    for i, name in enumerate(names):
        rest = chosen[:i] + chosen[i + 1 :]
        assert brute.solutions(model, rest, limit=1), f"{name} is not needed in {names}"


@SETTINGS
@given(model=models(), k=st.integers(1, 4))
def test_native_in_small_vectorized_chunks_equals_brute_force(model, k):
    # Tiny limits force what the kernel models reach only beyond 2^20 points: a search over the
    # outer variables, numpy over (their surviving assignments x the inner box) in several chunks.
    with mock.patch.object(vector, "VECTOR_MAX_POINTS", 12), mock.patch.object(native, "_INNER_POINTS", 6):
        assert enumerate_all(model, backend="native") == enumerate_all(model, backend="brute")
        assert top_k(model, k, backend="native") == top_k(model, k, backend="brute")
        assert (solve(model, backend="native") is None) == (not brute.solutions(model, limit=1))


def _expression_nodes(model) -> list:
    """Every expression node of the model's constraints (nested ones too) and objective."""
    nodes: dict[int, object] = {}

    def expr(e) -> None:
        nodes[id(e)] = e
        children = [
            *getattr(e, "factors", ()),
            *getattr(e, "args", ()),
            *(t for _, t in getattr(e, "terms", ())),
        ]
        children += [getattr(e, a) for a in ("arg", "d") if not isinstance(getattr(e, a, 0), int)]
        for child in children:
            expr(child)

    def constraint(c) -> None:
        for side in ("lhs", "rhs", "a", "b"):
            if hasattr(c, side):
                expr(getattr(c, side))
        for part in (
            *getattr(c, "parts", ()),
            *(getattr(c, a) for a in ("inner", "cond", "then") if hasattr(c, a)),
        ):
            constraint(part)

    for nc in model.constraints:
        constraint(nc.constraint)
    if model.objective is not None:
        expr(model.objective.expr)
    return list(nodes.values())


@SETTINGS
@given(model=models())
def test_cpsat_intervals_bottom_up_equal_the_expressions_own_bounds(model):
    # CP-SAT's auxiliary variables take their bounds from these intervals: one too narrow would cut
    # solutions, so the memoised bottom-up evaluation must equal Expr.bounds on every node
    from tunekit.solvers import cpsat

    builder = cpsat._Builder(model, model.constraints)
    ranges = {v.name: (v.domain.lo, v.domain.hi) for v in model.variables}
    for e in _expression_nodes(model):
        expected = e.bounds(ranges) if e.variables() else (e.evaluate({}),) * 2
        assert builder.iv(e) == expected, e


@pytest.mark.parametrize("share", [0.0, 1 / 8, 1.0], ids=["all-on-survivors", "split", "all-on-grid"])
@SETTINGS
@given(model=models(objective="min"))
def test_numpy_evaluation_finds_exactly_brute_forces_solutions_and_values(share, model):
    # constraints over few variables on the broadcast grid, the others on the survivors' columns:
    # every split gives brute force's points in its order, and the extra values at each of them
    expected = enumerate_all(model, backend="brute")
    objective = model.objective.expr
    with mock.patch.object(numeric, "_NARROW_SHARE", share):
        found = numeric.feasible_columns(model, extra={"objective": objective})
    assert found is not None, "small random models are within int64"
    names = [v.name for v in model.variables]
    rows = zip(*(found.columns[n].tolist() for n in names), strict=True)
    got = [dict(zip(names, values, strict=True)) for values in rows]
    assert got == expected and found.count == len(expected)
    values = found.values["objective"]
    at = [int(values[i]) if hasattr(values, "shape") else int(values) for i in range(found.count)]
    assert at == [objective.evaluate(a) for a in expected]


@SETTINGS
@given(model=models())
def test_domain_bounds_bottom_up_equal_the_expressions_own_bounds(model):
    # every node keeps its interval over the domains (divisions check theirs when built; numpy's
    # evaluator bounds int64 with them): the memoised bottom-up one must equal Expr.bounds
    ranges = {v.name: (v.domain.lo, v.domain.hi) for v in model.variables}
    for e in _expression_nodes(model):
        expected = e.bounds(ranges) if e.variables() else (e.evaluate({}),) * 2
        assert e._domain_bounds() == expected, e


@SETTINGS
@given(model=models(), data=st.data())
def test_one_memo_over_many_constraints_gives_each_ones_truth(model, data):
    point = {v.name: data.draw(st.sampled_from(v.domain.values)) for v in model.variables}
    memo: dict = {}
    shared = [nc.holds(point, memo) for nc in model.constraints]
    assert shared == [nc.holds(point) for nc in model.constraints]
