"""The vector backend: exact on what numpy can evaluate, native's answer beyond that (never partial)."""

from tunekit.solvers import Model, Range, Values, enumerate_all, explain, solve, top_k
from tunekit.solvers.vector import VECTOR_MAX_POINTS, vector_solutions


def test_beyond_the_point_limit_it_answers_like_native():
    m = Model("big")
    x, y = m.int_var("x", Range(0, 2047)), m.int_var("y", Range(0, 2047))
    m.add("diagonal", x * 2048 + y <= 3, why="example")
    m.minimize(y - x)
    assert VECTOR_MAX_POINTS < 2048 * 2048 and vector_solutions(m) is None
    assert enumerate_all(m, backend="vector") == enumerate_all(m, backend="native")
    assert top_k(m, 2, backend="vector") == [{"x": 0, "y": 0}, {"x": 0, "y": 1}]


def test_values_beyond_int64_answer_like_native():
    m = Model("huge")
    x = m.int_var("x", Values([1, 2, 3]))
    m.add("huge", x * 2**70 >= 2**71, why="example")
    m.minimize(x * 2**70)
    assert vector_solutions(m) is None
    assert enumerate_all(m, backend="vector") == [{"x": 2}, {"x": 3}]
    assert solve(m, backend="vector") == {"x": 2}
    m.add("none", x >= 4, why="example")
    assert explain(m, backend="vector") == ["none"]


def test_a_model_without_variables():
    m = Model("empty")
    assert enumerate_all(m, backend="vector") == [{}] == enumerate_all(m, backend="brute")
