"""tunekit.tune: all feasible configurations enumerated, ranked by cost, re-verified; explained when none."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

import tunekit.bench.solver_bench_previous as previous
import tunekit.tuning as tuning
from tunekit.bench.solver_bench import import_time
from tunekit.constraints import FAMILIES, build_space
from tunekit.cost import estimate, estimate_all
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import Model, Range, enumerate_all, solve
from tunekit.solvers.vector import vector_minimum, vector_solutions
from tunekit.tuning import NoFeasibleConfig, TuneResult, binding_constraints, tune

A100 = load_profile("a100")
QUICK_START = Problem("lstm", batch=16, heads=1, head_dim=768)
SMALL = Problem("lstm", batch=16, heads=1, head_dim=64)
RESOURCES = ("threads_per_block", "blocks", "registers_per_thread", "shared_memory_bytes_per_block")


@pytest.fixture(scope="module")
def quick_start() -> TuneResult:
    return tune(QUICK_START, "a100")


def test_auto_returns_ranked_verified_candidates(quick_start: TuneResult):
    r = quick_start
    assert r.backend in FAMILIES and r.config.family == r.backend
    assert r.gpu == A100 and r.problem == QUICK_START and r.solver == "vector"  # "auto" on small spaces
    assert r.candidates[0].config == r.config and 1 <= len(r.candidates) <= 5
    times = [c.time_us_per_step for c in r.candidates]
    assert times == sorted(times)
    for c in r.candidates:  # independent check: each candidate's space says it violates nothing
        space = build_space(c.backend, QUICK_START, A100)
        assert space.violated(c.config) == []
        assert all(k in c.predicted for k in (*RESOURCES, "time_us_per_step"))
        assert c.predicted["time_us_per_step"] == estimate(space, c.config.params).total_us_per_step > 0
        assert {k: c.predicted[k] for k in RESOURCES} == {k: space.resources(c.config)[k] for k in RESOURCES}
    assert r.feasible_count["total"] == sum(r.feasible_count[f] for f in FAMILIES)
    assert r.feasible_count["total"] > 0 and r.solve_seconds > 0


def test_auto_picks_the_fastest_feasible_family(quick_start: TuneResult):
    best = {}
    for family in FAMILIES:
        try:
            best[family] = tune(QUICK_START, "a100", backend=family, top=1).candidates[0].time_us_per_step
        except NoFeasibleConfig:
            continue
    assert best, "some family must fit an LSTM with D=768 on an A100"
    assert quick_start.backend == min(best, key=best.get)
    assert quick_start.predicted["time_us_per_step"] == pytest.approx(min(best.values()))


@pytest.mark.parametrize("family", FAMILIES)
def test_top_k_are_the_k_cheapest_of_all_feasible(family: str):
    space = build_space(family, SMALL, A100)
    every = enumerate_all(space.model)
    if not every:
        pytest.skip(f"{family} has no configuration for {SMALL}")
    costs = sorted(estimate(space, a).total_us_per_step for a in every)
    result = tune(SMALL, A100, backend=family, top=3)
    assert result.feasible_count == {family: len(every), "total": len(every)}
    assert [c.time_us_per_step for c in result.candidates] == pytest.approx(costs[:3])
    assert all(c.backend == family for c in result.candidates)


def test_solvers_agree():
    solvers = ("native", "cpsat", "brute", "vector")
    results = [tune(SMALL, "a100", backend="triton-fused", solver=s) for s in solvers]
    assert [r.solver for r in results] == list(solvers)
    names = {tuple(c.config.name for c in r.candidates) for r in results}
    assert len(names) == 1
    assert len({tuple(r.feasible_count.items()) for r in results}) == 1


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "problem",
    [
        Problem("lstm", batch=64, heads=1, head_dim=768),
        Problem("gru", batch=16, heads=4, head_dim=64, dtype="float32", direction="both"),
        Problem("slstm", batch=1, heads=1, head_dim=4096, dtype="float16", direction="backward"),
        Problem("elman", batch=5, heads=3, head_dim=200),
    ],
    ids=lambda p: f"{p.cell}-{p.tag}-{p.direction}",
)
def test_vector_evaluation_finds_exactly_the_native_solutions(family: str, problem: Problem):
    model = build_space(family, problem, A100).model
    assert vector_solutions(model) == enumerate_all(model, backend="native")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "problem",
    [Problem("slstm", batch=256, heads=4, head_dim=384, dtype="float32"), Problem("elman", 5, 3, 200)],
    ids=["slstm-N4-fp32", "elman-N3-B5"],
)
def test_resources_of_all_configurations_equal_each_ones(
    family: str, problem: Problem, monkeypatch: pytest.MonkeyPatch
):
    space = build_space(family, problem, A100)
    found = enumerate_all(space.model, backend="native")
    one_by_one = [space.resources(a) for a in found]
    assert space.resources_of_all(found) == one_by_one
    # beyond the vector evaluator, it prices one point at a time
    monkeypatch.setattr("tunekit.constraints.expression_values", lambda exprs, env: None)
    assert space.resources_of_all(found) == one_by_one
    assert space.resources_of_all([]) == []


def test_vector_refuses_what_it_cannot_evaluate_exactly():
    model = Model("big")
    x, y = model.int_var("x", Range(1, 10)), model.int_var("y", Range(1, 10))
    model.add("huge", x * (1 << 40) * y * (1 << 30) >= 0, why="beyond int64")
    assert vector_solutions(model) is None
    assert len(enumerate_all(model)) == 100
    too_many = Model("many")
    for name in "abcdefg":
        too_many.int_var(name, Range(1, 10))
    assert vector_solutions(too_many) is None  # 10^7 points > VECTOR_MAX_POINTS


def test_a_solver_answer_that_breaks_a_constraint_raises(monkeypatch: pytest.MonkeyPatch):
    def lying_solver(model, backend="native"):
        return [{v.name: v.domain.hi for v in model.variables}]  # the largest of everything

    monkeypatch.setattr(tuning, "enumerate_all", lying_solver)
    fp32 = Problem("lstm", batch=16, heads=1, head_dim=128, dtype="float32")  # nothing fits: any answer lies
    with pytest.raises(RuntimeError, match="solver bug"):
        tune(fp32, "a100", backend="triton-fused", solver="native")


class _FixedLimits:
    """A space whose limits are fixed numbers (used, limit) at any assignment."""

    def limits(self, assignment):
        return [
            ("shared_memory_per_block", 163_840, 166_912, "B"),
            ("registers_per_thread", 200, 255, "registers"),
            ("threads_per_block", 1024, 1024, "threads"),
            ("co_residency", 108, 108 * 0, "blocks"),  # a zero limit is never "binding": it is broken
        ]


def test_binding_constraints_read_like_the_design():
    assert binding_constraints(_FixedLimits(), {}) == (
        "threads_per_block: 1,024 / 1,024 threads (100%)",
        "shared_memory_per_block: 163,840 / 166,912 B (98%)",
    )


def test_binding_constraints_of_real_candidates(quick_start: TuneResult):
    for c in quick_start.candidates:
        space = build_space(c.backend, QUICK_START, A100)
        full = {**c.config.params}
        tight = {name for name, used, limit, _ in space.limits(full) if limit > 0 and used >= 0.95 * limit}
        assert {line.split(":")[0] for line in c.binding_constraints} == tight


def test_nothing_feasible_raises_with_the_explanation():
    problem = Problem("lstm", batch=16, heads=1, head_dim=128, dtype="float32")
    with pytest.raises(NoFeasibleConfig) as info:
        tune(problem, "a100", backend="triton-fused")
    err = info.value
    assert isinstance(err, ValueError) and "tried triton-fused" in str(err)
    assert [e.family for e in err.explanations] == ["triton-fused"]
    assert "shared_memory_per_block" in [c.name for c in err.explanations[0].conflicts]
    assert "B needed > 166,912 B limit" in err.to_text()
    assert json.loads(json.dumps(err.to_json_dict()))["explanations"][0]["feasible"] is False


def test_json_has_the_design_schema(quick_start: TuneResult):
    data = json.loads(json.dumps(quick_start.to_json_dict()))
    for key in ("gpu", "cell", "backend", "problem", "config", "predicted", "binding_constraints"):
        assert key in data
    for key in ("candidates", "feasible_count", "solver", "solve_seconds"):
        assert key in data
    assert data["gpu"] == "a100-sxm4-80gb" and data["cell"] == "lstm"
    assert data["problem"] == {
        "batch": 16,
        "heads": 1,
        "head_dim": 768,
        "dtype": "bfloat16",
        "direction": "forward",
    }
    assert data["config"] == quick_start.config.params
    assert all(k in data["predicted"] for k in (*RESOURCES, "time_us_per_step"))
    assert isinstance(data["feasible_count"], int) and data["solver"] == "vector"
    assert data["candidates"][0]["config"] == data["config"]
    assert all(
        set(c) >= {"backend", "config", "predicted", "binding_constraints"} for c in data["candidates"]
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"problem": "lstm"}, "problem: got str"),
        ({"gpu": "a10O"}, "unknown GPU 'a10O'"),
        ({"backend": "cuda"}, "backend: got 'cuda'"),
        ({"solver": "gurobi"}, "solver: got 'gurobi'"),
        ({"top": 0}, "top: got 0"),
    ],
    ids=["problem", "gpu", "backend", "solver", "top"],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs: dict, match: str):
    args = {"problem": SMALL, "gpu": "a100", **kwargs}
    with pytest.raises(ValueError, match=match):
        tune(**args)


@pytest.mark.parametrize("family", FAMILIES)
def test_vector_minimum_is_the_native_optimum(family: str):
    space = build_space(family, Problem("gru", batch=16, heads=2, head_dim=96), A100)
    objective = space.model.constraint("registers_per_thread").constraint.lhs  # many ties: the order matters
    model = Model("copy")
    for v in space.model.variables:
        model.int_var(v.name, v.domain)
    for c in space.model.constraints:
        model.add(c.name, c.constraint, c.why)
    handled, best = vector_minimum(model, objective)
    model.minimize(objective)
    assert handled and best == solve(model, backend="native")


def test_importing_the_tuner_loads_no_sympy_and_takes_under_0_3_s():
    # CPU time, the best of three fresh interpreters: on the shared 2-core machine wall time also
    # counts waiting for other jobs
    imports = import_time(runs=3)
    assert not imports["sympy_loaded"], "the tuner needs only the cells' slot and state counts"
    assert imports["cpu_s"] <= 0.3


def test_a_cell_from_the_sympy_free_registry_still_derives_its_code():
    probe = (
        "import sys; from tunekit.cells import get_cell; cell = get_cell('slstm'); "
        "assert 'sympy' not in sys.modules; code = cell.forward_code('torch'); "
        "from tunekit.cells import StepVars; "
        "print(len(code) > 0, 'sympy' in sys.modules, StepVars.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "tunekit.cells.spec"]


# A sample of the benchmark sweep for the vectorised path against the previous one: every cell,
# dtype and direction, one and four heads, batch 1..256, head dims from triton-fused's range to
# cuda-alternating only, on both GPUs of the sweep (and one problem nothing fits).
PATH_SAMPLE = [
    ("a100", Problem("lstm", batch=16, heads=1, head_dim=64)),
    ("a100", Problem("lstm", batch=256, heads=4, head_dim=384, dtype="float32")),
    ("h100", Problem("gru", batch=16, heads=4, head_dim=192, dtype="float16", direction="both")),
    ("h100", Problem("slstm", batch=1, heads=1, head_dim=2304, direction="backward")),
    ("a100", Problem("elman", batch=5, heads=3, head_dim=200)),
    ("h100", Problem("slstm", batch=256, heads=4, head_dim=48, dtype="float32")),
    ("a100", Problem("gru", batch=256, heads=1, head_dim=4096, dtype="float32")),
    ("h100", Problem("lstm", batch=1, heads=4, head_dim=1536, dtype="float16", direction="both")),
]
SAMPLE_IDS = [f"{gpu}-{p.cell}-{p.tag}-{p.direction}" for gpu, p in PATH_SAMPLE]


def _previous_ranking(space) -> tuple[list[dict[str, int]], list[float]]:
    """Every feasible point and its time by the previous path, best first (ties: solver order)."""
    found = previous._solutions(space.model, "auto")[0]
    resources = space.resources_of_all(found)
    pairs = enumerate(zip(found, resources, strict=True))
    timed = sorted((previous._time_us(space, a, r), i) for i, (a, r) in pairs)
    return [found[i] for _, i in timed], [t for t, _ in timed]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("gpu", "problem"), PATH_SAMPLE, ids=SAMPLE_IDS)
def test_the_vectorised_path_finds_and_ranks_every_point_as_the_previous_one(gpu, problem, family):
    space = build_space(family, problem, load_profile(gpu))
    priced = tuning._price(space, "auto")
    points = [priced.assignment(i) for i in range(priced.count)]
    assert points == previous._solutions(space.model, "auto")[0]  # the same feasible set, same order
    order = sorted(range(priced.count), key=priced.times.__getitem__)
    ranked, times = _previous_ranking(space)
    assert [points[i] for i in order] == ranked and [priced.times[i] for i in order] == times
    for i in order[:3]:  # what a candidate reports: exactly the previous path's numbers
        assert priced.predicted(i) == previous._predicted(space, points[i])
        assert priced.binding(i) == binding_constraints(space, points[i])


def _result(gpu, problem, tuner, **kwargs) -> dict:
    try:
        data = tuner(problem, gpu, **kwargs).to_json_dict()
    except NoFeasibleConfig as err:
        return {"error": str(err), "families": [s.family for s in err.spaces]}
    del data["solve_seconds"]
    return data


@pytest.mark.parametrize(("gpu", "problem"), PATH_SAMPLE, ids=SAMPLE_IDS)
def test_tune_returns_what_the_previous_path_returns(gpu, problem):
    assert _result(gpu, problem, tune) == _result(gpu, problem, previous.tune_previous)


def test_nothing_feasible_raises_as_the_previous_path_raises():
    problem = Problem("lstm", batch=16, heads=1, head_dim=128, dtype="float32")
    new = _result("a100", problem, tune, backend="triton-fused")
    assert "error" in new and new == _result("a100", problem, previous.tune_previous, backend="triton-fused")


@pytest.mark.parametrize("solver", ["native", "cpsat"])
def test_other_solvers_are_priced_as_the_previous_path_prices_them(solver):
    gpu, problem = PATH_SAMPLE[2]
    assert _result(gpu, problem, tune, solver=solver) == _result(
        gpu, problem, previous.tune_previous, solver=solver
    )


def test_each_fallback_gives_the_same_result(monkeypatch: pytest.MonkeyPatch):
    gpu, problem = PATH_SAMPLE[1]
    expected = _result(gpu, problem, previous.tune_previous)
    real = tuning.feasible_columns
    # values beyond int64's exact range: resources point by point, binding constraints per candidate
    monkeypatch.setattr(
        tuning, "feasible_columns", lambda *a, **k: dataclasses.replace(real(*a, **k), values={})
    )
    assert _result(gpu, problem, tune) == expected
    # the static int64 bound fails: the checked evaluator enumerates, numpy's values come after
    monkeypatch.setattr(tuning, "feasible_columns", lambda *args, **kwargs: None)
    assert _result(gpu, problem, tune) == expected
    # a cost model that raises for the batch: every point priced by estimate, one at a time
    monkeypatch.setattr(tuning, "estimate_all", lambda *args: 1 / 0)
    assert _result(gpu, problem, tune) == expected


@pytest.mark.parametrize(("gpu", "problem"), PATH_SAMPLE[:4], ids=SAMPLE_IDS[:4])
def test_estimate_all_gives_estimates_numbers_and_types(gpu, problem):
    for family in FAMILIES:
        space = build_space(family, problem, load_profile(gpu))
        found = enumerate_all(space.model)
        if not found:
            continue
        resources = space.resources_of_all(found)
        params = {n: [a[n] for a in found] for n in space.tunables}
        costs = estimate_all(space, params, {k: [r[k] for r in resources] for k in resources[0]})
        for i, (a, r) in enumerate(zip(found, resources, strict=True)):
            for name, value in estimate(space, a, r).terms().items():
                assert costs[name][i] == value and type(costs[name][i]) is type(value), (family, name)
