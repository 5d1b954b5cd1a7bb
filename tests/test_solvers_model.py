"""The solver IR: domains, expressions, constraints and the model behave as specified."""

import pytest

from tunekit.solvers import (
    AllOf,
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
    ceil_div,
    floor_div,
    round_up,
)

# -- domains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain, values",
    [
        (Range(-2, 3), (-2, -1, 0, 1, 2, 3)),
        (Range(7, 7), (7,)),
        (Values([8, 2, 8, 5]), (2, 5, 8)),
        (PowersOfTwo(16, 256), (16, 32, 64, 128, 256)),
        (PowersOfTwo(3, 40), (4, 8, 16, 32)),
        (PowersOfTwo(-5, 1), (1,)),
        (DivisorsOf(36), (1, 2, 3, 4, 6, 9, 12, 18, 36)),
        (DivisorsOf(1), (1,)),
        (Multiples(32, 1, 100), (32, 64, 96)),
        (Multiples(3, -4, 3), (-3, 0, 3)),
    ],
    ids=lambda x: repr(x) if not isinstance(x, tuple) else "",
)
def test_domain_lists_its_members_ascending(domain, values):
    assert domain.values == values
    assert (domain.lo, domain.hi, len(domain)) == (values[0], values[-1], len(values))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Range(5, 3),
        lambda: Values([]),
        lambda: PowersOfTwo(5, 7),
        lambda: Multiples(10, 1, 9),
    ],
    ids=["range-lo-above-hi", "no-values", "no-power-in-range", "no-multiple-in-range"],
)
def test_empty_domain_is_a_value_error(build):
    with pytest.raises(ValueError, match="empty domain"):
        build()


@pytest.mark.parametrize(
    "build, arg",
    [
        (lambda: Range(1.5, 3), "lo"),
        (lambda: Values("abc"), "values"),
        (lambda: DivisorsOf(0), "n"),
        (lambda: Multiples(0, 1, 9), "step"),
    ],
    ids=["float-bound", "string-values", "divisors-of-zero", "zero-step"],
)
def test_bad_domain_arguments_name_the_argument(build, arg):
    with pytest.raises(ValueError, match=arg):
        build()


# -- expressions ------------------------------------------------------------------------------


def _xy():
    m = Model("t")
    return m, m.int_var("x", Range(-5, 5)), m.int_var("y", Range(1, 9))


@pytest.mark.parametrize(
    "make, x, y, expected",
    [
        (lambda x, y: x + y * 3 - 2, 4, 5, 17),
        (lambda x, y: 10 - x, 4, 5, 6),
        (lambda x, y: -x * y * x, 2, 3, -12),
        (lambda x, y: x * 0 + y, 2, 3, 3),
        (lambda x, y: ceil_div(x, 4), -5, 1, -1),
        (lambda x, y: ceil_div(x * 100, 256), 3, 1, 2),
        (lambda x, y: floor_div(x, 4), -5, 1, -2),
        (lambda x, y: x // 2, 5, 1, 2),
        (lambda x, y: x % 3, -5, 1, 1),
        (lambda x, y: round_up(y * 100, 128), 0, 3, 384),
        (lambda x, y: Min(x, y, 2), 4, 3, 2),
        (lambda x, y: Max(x * y, 1), -4, 3, 1),
    ],
    ids=[
        "linear",
        "rsub",
        "product",
        "times-zero",
        "ceil-neg",
        "ceil",
        "floor-neg",
        "floordiv",
        "mod",
        "round-up",
        "min",
        "max",
    ],
)
def test_expression_evaluates_like_python(make, x, y, expected):
    _, vx, vy = _xy()
    assert make(vx, vy).evaluate({"x": x, "y": y}) == expected


@pytest.mark.parametrize(
    "fn, args, expected",
    [
        (ceil_div, (300, 256), 2),
        (ceil_div, (256, 256), 1),
        (floor_div, (-1, 128), -1),
        (round_up, (300, 128), 384),
        (round_up, (0, 128), 0),
        (Min, (3, 1, 2), 1),
        (Max, ([3, 1, 2],), 3),
    ],
    ids=["ceil_div", "ceil_div-exact", "floor_div", "round_up", "round_up-zero", "Min", "Max-list"],
)
def test_formula_helpers_return_plain_ints_for_ints(fn, args, expected):
    result = fn(*args)
    assert type(result) is int and result == expected


@pytest.mark.parametrize("fn", [ceil_div, floor_div, round_up])
@pytest.mark.parametrize("d", [0, -4, 2.5], ids=["zero", "negative", "float"])
def test_division_needs_a_positive_divisor(fn, d):
    with pytest.raises(ValueError, match="divisor must be a positive int"):
        fn(10, d)


@pytest.mark.parametrize("fn", [ceil_div, floor_div, round_up])
def test_division_by_a_variable_that_can_be_zero_or_less_is_rejected(fn):
    _, x, y = _xy()  # x in [-5, 5]
    with pytest.raises(ValueError, match="divisor x can be -5"):
        fn(y, x)


@pytest.mark.parametrize(
    "make, x, y, expected",
    [
        (lambda x, y: ceil_div(x, y), -5, 2, -2),
        (lambda x, y: floor_div(x, y), -5, 2, -3),
        (lambda x, y: round_up(x + 7, y), 3, 4, 12),
        (lambda x, y: 768 // y, 0, 5, 153),
        (lambda x, y: x % y, -5, 3, 1),
    ],
    ids=["ceil", "floor", "round-up", "rfloordiv", "mod"],
)
def test_division_by_a_positive_variable_evaluates_like_python(make, x, y, expected):
    _, vx, vy = _xy()
    assert make(vx, vy).evaluate({"x": x, "y": y}) == expected


def test_expressions_refuse_truth_tests_and_hashing():
    _, x, _ = _xy()
    with pytest.raises(TypeError, match="truth value"):
        bool(x + 1)
    with pytest.raises(TypeError, match="truth value"):
        bool(x < 3)
    with pytest.raises(TypeError):
        hash(x)


def test_expression_reports_variables_and_interval():
    _, x, y = _xy()
    e = x * y + ceil_div(y, 2)
    assert e.variables() == ("x", "y")
    assert e.bounds({"x": (-5, 5), "y": (1, 9)}) == (-45 + 1, 45 + 5)


def test_evaluating_without_a_value_names_the_variable():
    _, x, y = _xy()
    with pytest.raises(ValueError, match="'y'"):
        (x + y).evaluate({"x": 1})


# -- constraints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, assignment, holds",
    [
        (lambda x, y: x * 4 <= 16, {"x": 4, "y": 1}, True),
        (lambda x, y: x * 4 < 16, {"x": 4, "y": 1}, False),
        (lambda x, y: x == y, {"x": 3, "y": 3}, True),
        (lambda x, y: x != y, {"x": 3, "y": 3}, False),
        (lambda x, y: 2 >= x, {"x": 3, "y": 1}, False),  # noqa: SIM300 - the reflected operator is the point
        (lambda x, y: x > -y, {"x": 0, "y": 1}, True),
        (lambda x, y: Divides(y, 12), {"x": 0, "y": 4}, True),
        (lambda x, y: Divides(y, x + 1), {"x": 4, "y": 3}, False),
        (lambda x, y: Divides(x, y), {"x": 0, "y": 3}, False),
        (lambda x, y: Divides(x, y - 3), {"x": 0, "y": 3}, True),
        (lambda x, y: Implies(x > 0, y >= 4), {"x": -1, "y": 1}, True),
        (lambda x, y: Implies(x > 0, y >= 4), {"x": 1, "y": 1}, False),
        (lambda x, y: AnyOf(x == 1, y == 1), {"x": 0, "y": 1}, True),
        (lambda x, y: AllOf(x == 1, y == 1), {"x": 0, "y": 1}, False),
        (lambda x, y: (x == 0) & ~(y == 2), {"x": 0, "y": 1}, True),
        (lambda x, y: (x == 1) | Not(y == 1), {"x": 0, "y": 1}, False),
    ],
    ids=[
        "le",
        "lt",
        "eq",
        "ne",
        "reflected-ge",
        "gt",
        "divides-const",
        "divides-expr",
        "zero-divides-3",
        "zero-divides-0",
        "implies-vacuous",
        "implies-broken",
        "anyof",
        "allof",
        "and-not",
        "or-not",
    ],
)
def test_constraint_holds_and_its_negation_does_not(make, assignment, holds):
    _, x, y = _xy()
    c = make(x, y)
    assert c.holds(assignment) is holds
    assert c.negated().holds(assignment) is (not holds)


def test_sides_give_both_values_of_a_comparison():
    _, x, y = _xy()
    assert (x * 32 <= 1024).sides({"x": 40, "y": 1}) == (1280, 1024)
    assert Divides(y, 12).sides({"x": 0, "y": 5}) == (5, 12)
    assert Implies(x > 0, y * 2 <= 8).sides({"x": 1, "y": 5}) == (10, 8)
    assert AnyOf(x == 1, y == 1).sides({"x": 1, "y": 1}) is None


# -- model ------------------------------------------------------------------------------------


def test_duplicate_constraint_name_is_a_value_error():
    m, x, _ = _xy()
    m.add("limit", x <= 3, why="fact")
    with pytest.raises(ValueError, match="'limit' is already"):
        m.add("limit", x <= 4, why="another fact")


def test_duplicate_variable_name_is_a_value_error():
    m, _, _ = _xy()
    with pytest.raises(ValueError, match="'x' is already declared"):
        m.int_var("x", Range(0, 1))


def test_foreign_variables_are_rejected():
    m, _, _ = _xy()
    other = Model("other").int_var("z", Range(0, 1))
    with pytest.raises(ValueError, match="'z'"):
        m.add("uses_z", other <= 1, why="")


def test_folded_plain_int_comparisons_become_constant_constraints():
    m, _, _ = _xy()
    c = m.add("fits", ceil_div(300, 256) * 256 <= 256, why="fits one unit")
    assert c.holds({}) is False
    assert m.check({"x": 0, "y": 1}) == ["fits"]


def test_check_names_violated_constraints_and_domain_misses():
    m, x, y = _xy()
    m.add("small_x", x <= 0, why="")
    m.add("y_even", Divides(2, y), why="")
    assert m.check({"x": 1, "y": 3}) == ["small_x", "y_even"]
    assert m.check({"x": 9, "y": 2}) == ["domain:x", "small_x"]


def test_model_rejects_non_constraints():
    m, x, _ = _xy()
    with pytest.raises(ValueError, match="expected a constraint"):
        m.add("oops", x + 1, why="")
