"""The printed Triton and CUDA code of every cell is real code that computes the step.

Specs: PyTorch and Triton assignments parse as Python; inside a tiny ``@triton.jit`` kernel, run by
Triton's interpreter, the printed forward and backward equal the PyTorch step in float64; the CUDA
forward and backward of each cell compile with nvcc for sm_80 in float (no double-precision math);
derivatives of max-like functions print as selects; what a printer cannot print is a ValueError.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
import triton  # conftest.py has set TRITON_INTERPRET=1 before this import
from cellcases import ALL_CELLS, CELL_IDS, incoming_grads, step_inputs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tunekit.cells import Cell, get_cell
from tunekit.cells.derive import backward_inputs, backward_outputs, forward_inputs, forward_outputs
from tunekit.cells.printers import CUDA_PRELUDE, PRINTERS, TORCH_PRELUDE, TRITON_PRELUDE, printed_code
from tunekit.cells.spec import at_least, logsigmoid, maximum, no_grad, sigmoid, tanh, where
from tunekit.reference import backward_step, forward_step

SIZE, BLOCK = 301, 64  # 301 elements in blocks of 64: the last block is masked

DIRECTIONS = {
    # direction -> (names the program reads, names it assigns)
    "forward": (forward_inputs, forward_outputs),
    "backward": (backward_inputs, backward_outputs),
}


@pytest.mark.parametrize("lang", ["torch", "triton"])
@pytest.mark.parametrize("cell", ALL_CELLS, ids=CELL_IDS)
def test_python_targets_parse(cell: Cell, lang: str):
    for prelude in (TORCH_PRELUDE, TRITON_PRELUDE):
        ast.parse(prelude)
    for direction in DIRECTIONS:
        for target, expr in printed_code(cell, direction, lang):
            tree = ast.parse(f"{target} = {expr}")
            assert isinstance(tree.body[0], ast.Assign), (direction, target)


def triton_step_source(cell: Cell, direction: str) -> str:
    """A module with one kernel: load each input row, run the printed assignments, store each output."""
    inputs, outputs = (names(cell) for names in DIRECTIONS[direction])
    code = printed_code(cell, direction, "triton")
    lines = [
        "import triton",
        "import triton.language as tl",
        "",
        TRITON_PRELUDE,
        "",
        "@triton.jit",
        "def step_kernel(inp, out, n, BLOCK: tl.constexpr):",
        "    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
        "    mask = offs < n",
        *(
            f"    {name} = tl.load(inp + {k} * n + offs, mask=mask, other=1.0)"
            for k, name in enumerate(inputs)
        ),
        *(f"    {target} = {expr}" for target, expr in code),
        # an output that is a constant (the sLSTM's ds_y = 0.0) is broadcast to the block
        *(
            f"    tl.store(out + {k} * n + offs, {name} + tl.zeros([BLOCK], tl.float32), mask=mask)"
            for k, name in enumerate(outputs)
        ),
    ]
    return "\n".join(lines) + "\n"


def load_module(path: Path, source: str):
    path.write_text(source)  # @triton.jit reads the kernel's source from its file
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def triton_and_torch_step(
    cell: Cell, direction: str, tmp_path: Path, magnitude: float | None
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(output name, printed step run in a Triton kernel in float32, torch step in float64) per output;
    ``magnitude``: every gate input is ±magnitude instead of standard normal."""
    module = load_module(tmp_path / f"tk_{cell.name}_{direction}.py", triton_step_source(cell, direction))
    values = step_inputs(cell, SIZE, torch.float64)
    for name in values:
        if magnitude is not None and name.startswith(("wx_", "ry_", "b_")):
            values[name] = values[name].sign() * magnitude
    if direction == "backward":
        values |= incoming_grads(cell, SIZE, torch.float64)
        reference = backward_step(cell)
    else:
        reference = forward_step(cell)
    inputs, outputs = (names(cell) for names in DIRECTIONS[direction])
    packed = torch.stack([values[name] for name in inputs]).float()  # what the kernel sees
    result = torch.empty(len(outputs), SIZE, dtype=torch.float32)
    module.step_kernel[(triton.cdiv(SIZE, BLOCK),)](packed, result, SIZE, BLOCK=BLOCK)

    # the float64 reference runs on the same float32-rounded inputs
    expected = reference(**{name: packed[k].double() for k, name in enumerate(inputs)})
    return [
        (name, result[k].double(), torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), (SIZE,)))
        for k, (name, value) in enumerate(zip(outputs, expected, strict=True))
    ]


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("cell", ALL_CELLS, ids=CELL_IDS)
def test_triton_code_runs_in_the_interpreter_and_equals_the_torch_step(cell, direction, tmp_path):
    for name, got, want in triton_and_torch_step(cell, direction, tmp_path, magnitude=None):
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the interpreter's numpy warns on any overflow
@pytest.mark.parametrize("magnitude", [10.0, 1e4], ids=["10", "1e4"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru", "slstm"])
def test_triton_code_saturates_without_overflow_for_large_preactivations(
    cell, direction, magnitude, tmp_path
):
    """Each of wx, ry, b at ±magnitude, so pre-activations reach ±3e4: the printed helpers (sigmoid
    and logsigmoid via exp(-|x|), tanh via sigmoid) and the sLSTM's stabilizer and empty memory
    (n == 0: f' = 0 without evaluating exp(lf - i)) keep float32 finite with no overflow anywhere;
    results match float64 up to float32 cancellation: exponents such as i - m' are differences of
    pre-activations of size 3 * magnitude, known to float32's 2^-24 of that, which exp turns into a
    relative error of the same size (3 * 3e4 * 2^-24 = 5.4e-3 at ±1e4, with a factor 3 of margin)."""
    tol = max(1e-4, 3 * 3 * magnitude * 2.0**-24)
    for name, got, want in triton_and_torch_step(get_cell(cell), direction, tmp_path, magnitude=magnitude):
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


def cuda_step_kernel(cell: Cell, direction: str) -> str:
    """A __global__ function reading each input row and writing each output row, in float."""
    inputs, outputs = (names(cell) for names in DIRECTIONS[direction])
    body = [f"  const float {name} = in[{k} * n + e];" for k, name in enumerate(inputs)]
    body += [f"  const float {target} = {expr};" for target, expr in printed_code(cell, direction, "cuda")]
    body += [f"  out[{k} * n + e] = {name};" for k, name in enumerate(outputs)]
    return "\n".join(
        [
            f'extern "C" __global__ void {cell.name}_{direction}(const float* __restrict__ in, '
            "float* __restrict__ out, int n) {",
            "  const int e = blockIdx.x * blockDim.x + threadIdx.x;",
            "  if (e >= n) return;",
            *body,
            "}",
        ]
    )


@pytest.mark.parametrize("cell", ALL_CELLS, ids=CELL_IDS)
def test_cuda_code_compiles_with_nvcc_in_float(cell: Cell, nvcc: str, tmp_path: Path):
    source = tmp_path / f"{cell.name}.cu"
    source.write_text(
        "\n\n".join([CUDA_PRELUDE, cuda_step_kernel(cell, "forward"), cuda_step_kernel(cell, "backward")])
    )
    done = subprocess.run(
        [nvcc, "-arch=sm_80", "-c", str(source), "-o", str(tmp_path / f"{cell.name}.o"),
         "-Xptxas", "--warn-on-double-precision-use"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # every literal is a float (1.0f): a bare 1.0 would drag the math to fp64 and ptxas would say so
    assert "double precision" not in done.stderr, done.stderr
    assert (tmp_path / f"{cell.name}.o").stat().st_size > 0


@pytest.mark.parametrize("lang", ["triton", "cuda"])
def test_max_derivatives_print_as_selects(lang: str):
    """The sLSTM's maximum and SymPy's Max/Abs differentiate to step functions: selects, never symbols."""
    backward = "\n".join(expr for _, expr in get_cell("slstm").backward_code(lang))
    a, b = sympy.symbols("a b", real=True)
    derivatives = [PRINTERS[lang](e) for e in (sympy.Max(a, b).diff(a), sympy.Abs(a - b).diff(a))]
    for text in [backward, *derivatives]:
        for symbolic in ("Heaviside", "Piecewise", "Max(", "sign(", "at_least", "ITE"):
            assert symbolic not in text
    select = "tl.where(" if lang == "triton" else " ? "
    assert select in backward and all(select in d for d in derivatives)
    # SymPy's Heaviside(0) = 1/2 (a tie splits the gradient) survives the printing
    assert ("0.5f" if lang == "cuda" else "0.5") in derivatives[0]


def test_tied_max_in_torch_splits_the_gradient_like_its_printed_derivative():
    a, b = sympy.symbols("a b", real=True)
    namespace = {"torch": torch}
    exec(TORCH_PRELUDE, namespace)
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    out = eval(PRINTERS["torch"](sympy.Max(a, b)), namespace | {"a": x, "b": y})
    (grad,) = torch.autograd.grad(out.sum(), x)
    derivative = eval(PRINTERS["torch"](sympy.Max(a, b).diff(a)), namespace | {"a": x, "b": y})
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(torch.as_tensor(derivative, dtype=torch.float64), grad)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (sympy.sin(sympy.Symbol("x", real=True)), r"cannot print sin \(sin\(x\)\) as cuda"),
        (sympy.Symbol("x", real=True) ** sympy.Symbol("p", real=True), r"cannot print the power x\*\*p"),
        (sympy.Piecewise((1, sympy.Symbol("x", real=True) > 0)), r"where\(\) needs an 'otherwise' branch"),
    ],
    ids=["sin", "symbolic-power", "piecewise-without-otherwise"],
)
def test_unprintable_expressions_are_a_clear_error(expr, message):
    with pytest.raises(ValueError, match=message):
        PRINTERS["cuda"](expr)


def test_printed_code_rejects_unknown_language_and_direction():
    with pytest.raises(ValueError, match=r"lang: got 'cpp', expected one of \['torch', 'triton', 'cuda'\]"):
        printed_code(get_cell("lstm"), "forward", "cpp")
    with pytest.raises(ValueError, match=r"direction: got 'sideways', expected 'forward' or 'backward'"):
        printed_code(get_cell("lstm"), "sideways", "torch")


SYMBOLS = sympy.symbols("a b c", real=True)
# leaves and operators for random expressions; every function is bounded or applied to something
# bounded, so values stay finite and a printing mistake (a lost parenthesis, a wrong sign) shows
_LEAVES = st.sampled_from([*SYMBOLS, sympy.Integer(2), sympy.Rational(1, 2), sympy.Integer(-3)])


def _grow(children: st.SearchStrategy) -> st.SearchStrategy:
    pairs = st.tuples(children, children)
    return st.one_of(
        pairs.map(lambda p: p[0] + p[1]),
        pairs.map(lambda p: p[0] - p[1]),
        pairs.map(lambda p: p[0] * p[1]),
        pairs.map(lambda p: p[0] / (1 + p[1] ** 2)),
        children.map(lambda x: -x),
        children.map(lambda x: x**2),
        children.map(lambda x: tanh(x) ** 3),
        children.map(sigmoid),
        pairs.map(lambda p: maximum(p[0], p[1])),
        pairs.map(lambda p: sympy.Max(p[0], p[1], 0)),
        st.tuples(children, children, children).map(lambda t: where(t[0] > t[1], t[2], t[1] - t[2])),
    )


EXPRESSIONS = st.recursive(_LEAVES, _grow, max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(expr=EXPRESSIONS)
def test_torch_printing_of_random_expressions_evaluates_like_sympy(expr):
    """Precedence, signs and selects are shared by all three printers; check them against SymPy."""
    values = [torch.linspace(-2.0, 2.0, 11, dtype=torch.float64) * s for s in (1.0, -0.7, 1.3)]
    namespace = {"torch": torch} | {str(sym): v for sym, v in zip(SYMBOLS, values, strict=True)}
    exec(TORCH_PRELUDE, namespace)
    printed = PRINTERS["torch"](expr)
    actual = torch.broadcast_to(torch.as_tensor(eval(printed, namespace), dtype=torch.float64), (11,))
    numeric = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "maximum": np.maximum, "select": np.where}
    expected = sympy.lambdify(SYMBOLS, expr, modules=[numeric, "numpy"])(*(v.numpy() for v in values))
    expected = torch.broadcast_to(torch.as_tensor(np.asarray(expected, dtype=np.float64)), (11,))
    torch.testing.assert_close(
        actual, expected, rtol=1e-12, atol=1e-12, msg=lambda m: f"{expr} -> {printed}: {m}"
    )


@settings(max_examples=40, deadline=None)
@given(expr=EXPRESSIONS)
# found by Hypothesis in a fresh clone: the constant maximum(2, tanh(2)**3) had no numeric value
@example(expr=tanh(tanh(maximum(2, tanh(2) ** 3)) ** 3) ** 3)
def test_printed_derivatives_of_random_expressions_equal_autograd_of_the_printed_expression(expr):
    """SymPy's derivative rules for the cell functions (select, maximum, Max, sigmoid, ...) agree with
    what autograd does through their torch printing, away from ties (the inputs avoid the constants)."""
    a = SYMBOLS[0]
    values = [torch.linspace(-2.0, 2.0, 11, dtype=torch.float64) * s + 0.0123 for s in (1.0, -0.7, 1.3)]
    leaf = values[0].clone().requires_grad_()
    namespace = {"torch": torch, "b": values[1], "c": values[2]}
    exec(TORCH_PRELUDE, namespace)
    output = eval(PRINTERS["torch"](expr), namespace | {"a": leaf})
    if not (isinstance(output, torch.Tensor) and output.requires_grad):
        assert sympy.diff(expr, a) == 0
        return
    (autograd,) = torch.autograd.grad(output.sum(), leaf)
    printed = PRINTERS["torch"](sympy.diff(expr, a))
    derivative = torch.broadcast_to(
        torch.as_tensor(eval(printed, namespace | {"a": values[0]}), dtype=torch.float64), (11,)
    )
    torch.testing.assert_close(
        derivative, autograd, rtol=1e-10, atol=1e-10, msg=lambda m: f"d/da {expr} -> {printed}: {m}"
    )


def test_nested_where_inside_a_comparison_prints_as_nested_selects():
    """SymPy's Piecewise would fold into an ITE condition here; where() stays a select for every target."""
    a, b = sympy.symbols("a b", real=True)
    inner = where(a > b, a, b)
    expr = where(inner > 0.5, a * inner, -b)
    assert PRINTERS["triton"](expr) == "tl.where(tl.where(a > b, a, b) > 0.5, a * tl.where(a > b, a, b), -b)"
    assert PRINTERS["cuda"](expr) == "((((a > b) ? a : b) > 0.5f) ? a * ((a > b) ? a : b) : -b)"
    # d/da: the inner select's derivative is a select of its branches' derivatives (1 and 0)
    assert PRINTERS["torch"](sympy.diff(expr, a)) == (
        "torch.where(torch.where(a > b, a, b) > 0.5, "
        "a * torch.where(a > b, torch.full_like(a, 1.0), 0.0) + torch.where(a > b, a, b), 0.0)"
    )


_T2 = math.tanh(2.0)
# every custom function of tunekit.cells.spec in a constant subexpression, with its value from math
CONSTANTS = [
    ("sigmoid", sigmoid(tanh(2)), 1 / (1 + math.exp(-_T2))),
    ("logsigmoid", logsigmoid(-3 * tanh(2)), -math.log1p(math.exp(3 * _T2))),
    ("logsigmoid-large", logsigmoid(-300 * tanh(2)), -300 * _T2),
    ("maximum", maximum(2, tanh(2) ** 3), 2.0),
    ("maximum-second", maximum(tanh(2) ** 3, 2), 2.0),
    ("at_least-true", at_least(1, tanh(2)), 1.0),
    ("at_least-false", at_least(tanh(2), 1), 0.0),
    ("no_grad", no_grad(tanh(2)), _T2),
    ("where-on-a-tie", where(maximum(tanh(2), 1) >= 1, sigmoid(3), 2), 1 / (1 + math.exp(-3))),
    ("where-false", where(maximum(tanh(2), 1) > 1, sigmoid(3), 2), 2.0),
    ("hypothesis-example", tanh(tanh(maximum(2, tanh(2) ** 3)) ** 3) ** 3, math.tanh(math.tanh(2) ** 3) ** 3),
]


@pytest.mark.parametrize("lang", ["torch", "triton", "cuda"])
@pytest.mark.parametrize(("expr", "value"), [c[1:] for c in CONSTANTS], ids=[c[0] for c in CONSTANTS])
def test_constant_subexpressions_of_every_custom_function_print_as_their_value(expr, value, lang):
    printed = PRINTERS[lang](expr)
    assert float(printed.removesuffix("f")) == pytest.approx(value, rel=1e-15, abs=1e-300)
    # inside an expression of a symbol, the constant is one literal
    a = sympy.Symbol("a", real=True)
    beside = PRINTERS[lang](a + expr)
    assert PRINTERS[lang].number(float(expr)) in beside and "maximum" not in beside, beside


def test_a_constant_without_a_numeric_value_is_a_clear_error():
    class opaque(sympy.Function):  # noqa: N801 (a user function SymPy cannot evaluate)
        nargs = 1

    with pytest.raises(ValueError, match=r"cannot evaluate the constant opaque\(2\) as a number for torch"):
        PRINTERS["torch"](opaque(2))


def test_the_ci_hypothesis_profile_is_derandomized_without_a_database():
    """CI=1 (set by .ci/run) must give one result per commit; tests/conftest.py registers the profile."""
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.print_blob and ci.max_examples == 100
    assert settings.get_profile("dev").print_blob


CAST_SOURCE = """
import triton
import triton.language as tl


@triton.jit
def cast_kernel(x_ptr, cast_ptr, stored_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(cast_ptr + offs, x.to(tl.bfloat16), mask=mask)  # an explicit cast
    tl.store(stored_ptr + offs, x, mask=mask)  # the conversion a store into a bf16 tensor does
"""


def test_canary_the_interpreter_truncates_fp32_to_bf16_instead_of_rounding(tmp_path):
    """Triton 3.9's interpreter converts fp32 -> bf16 by dropping the low 16 bits (round toward zero);
    compiled kernels round to nearest even (PTX cvt.rn.bf16.f32). The bf16 tolerances of the
    interpreter tests count on it (tests/test_triton_fused.py: a stored bf16 value is up to one ulp,
    2^-7 relative, off instead of half an ulp, 2^-8). If this canary fails, the interpreter changed:
    revisit that reasoning and the tolerances."""
    module = load_module(tmp_path / "tk_cast.py", CAST_SOURCE)
    x = torch.randn(768, generator=torch.Generator().manual_seed(0))
    cast, stored = torch.empty(768, dtype=torch.bfloat16), torch.empty(768, dtype=torch.bfloat16)
    module.cast_kernel[(1,)](x, cast, stored, 768, BLOCK=1024)
    truncated = (x.view(torch.int32) & ~0xFFFF).view(torch.float32).to(torch.bfloat16)  # exact
    nearest = x.to(torch.bfloat16)  # torch rounds to nearest even
    for name, got in (("cast", cast), ("store", stored)):
        assert torch.equal(got, truncated), f"{name}: the interpreter no longer truncates fp32 -> bf16"
        assert (got != nearest).sum() > 300, f"{name}: about half the values should be one ulp toward zero"
