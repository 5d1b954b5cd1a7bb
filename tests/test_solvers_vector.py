"""The vector backend: exact on what numpy can evaluate, native's answer beyond that (never partial)."""

from unittest import mock

from tunekit.solvers import Model, Range, Values, enumerate_all, explain, native, solve, top_k, vector
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
    assert enumerate_all(m, backend="native") == [{}]


def test_native_falls_back_to_its_search_when_a_later_chunk_leaves_int64():
    m = Model("late-overflow")
    x, y, z = m.int_var("x", Range(0, 7)), m.int_var("y", Values([1, 2**40])), m.int_var("z", Range(0, 3))
    m.add("square", x * y * y + z >= 3, why="y * y leaves int64 only where y = 2^40")
    m.minimize(x + z)
    with mock.patch.object(vector, "VECTOR_MAX_POINTS", 12), mock.patch.object(native, "_INNER_POINTS", 6):
        assert enumerate_all(m, backend="native") == enumerate_all(m, backend="brute")
        assert top_k(m, 3, backend="native") == top_k(m, 3, backend="brute")
