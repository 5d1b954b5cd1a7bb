"""Print a derived cell program as PyTorch, Triton or CUDA C assignments.

One small recursive printer per language over the few node kinds a cell uses (sums, products,
quotients, integer and half powers, the functions of :mod:`tunekit.cells.spec`, selects and
comparisons). Selects — including the derivatives of ``maximum`` and of SymPy's own
``Max``/``Min``/``Abs`` (``Heaviside``, ``sign``) — print as ``torch.where``, ``tl.where`` or C
ternaries. Helper functions a target lacks are provided as source in ``TORCH_PRELUDE``,
``TRITON_PRELUDE`` (``@triton.jit``) and ``CUDA_PRELUDE`` (``__device__``).
"""

from __future__ import annotations

import functools

import sympy

from tunekit.cells import derive
from tunekit.cells.spec import Cell, at_least, logsigmoid, maximum, no_grad, select, sigmoid

LANGS = ("torch", "triton", "cuda")

TORCH_PRELUDE = '''\
def _tk_maximum(a, b):
    """max(a, b); autograd sends a tie's gradient to a, as the derived backward does."""
    return torch.where(a >= b, a, b)


def _tk_max(a, b):
    """SymPy's Max(a, b): a tie's gradient is split in halves, as its derivative Heaviside(0) = 1/2."""
    return torch.where(a > b, a, torch.where(a < b, b, (a + b) / 2))


def _tk_min(a, b):
    """SymPy's Min(a, b), a tie's gradient split in halves like _tk_max."""
    return torch.where(a < b, a, torch.where(a > b, b, (a + b) / 2))
'''

TRITON_PRELUDE = """\
@triton.jit
def _tk_sigmoid(x):
    # 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below: exp's argument is <= 0, so nothing
    # overflows (tl.sigmoid's exp(-x) is inf for x < -88.7 in fp32; 1 / (1 + inf) = 0 is right but
    # an overflow all the same)
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    return tl.where(x >= 0, r, e * r)


@triton.jit
def _tk_tanh(x):
    # triton.language has no tanh; 2*sigmoid(2x) - 1 saturates to -1/+1 without inf/inf = NaN
    return 2.0 * _tk_sigmoid(2.0 * x) - 1.0


@triton.jit
def _tk_logsigmoid(x):
    # log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|)): exp's argument is <= 0, so it never overflows
    return tl.minimum(x, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(x)))
"""

CUDA_PRELUDE = """\
__device__ __forceinline__ float tk_sigmoid(float x) {
  // 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: expf's argument is <= 0, so nothing overflows
  const float e = expf(-fabsf(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

__device__ __forceinline__ float tk_logsigmoid(float x) {
  // log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): exp's argument is <= 0, so it never overflows
  return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}
"""

# binding strength of what a printed fragment's outermost operator is; a child printed in a
# context that binds tighter than itself gets parentheses
_SELECT, _COMPARE, _ADD, _MUL, _ATOM = 10, 30, 40, 50, 100

# sympy.sqrt(x) is Pow(x, 1/2), not a function class; this key names it in the function tables
_SQRT = "sqrt"

_COMPARISONS = {"==": "==", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


class _Printer:
    """Shared structure; subclasses say how numbers, functions and selects look."""

    lang = ""
    functions: dict[type | str, str] = {}

    def number(self, value: float) -> str:
        return repr(float(value))

    def select(self, condition: str, if_true: str, if_false: str, like: str | None = None) -> str:
        """Print a select; ``like`` names a tensor of the condition when both branches are constants."""
        raise NotImplementedError

    @staticmethod
    def _like(expr: sympy.Basic) -> str | None:
        """A symbol the expression reads (a tensor at run time), to give constant selects its dtype."""
        return min((symbol.name for symbol in expr.free_symbols), default=None)

    def __call__(self, expr: sympy.Basic) -> str:
        return self._print(expr)[0]

    def _wrap(self, printed: tuple[str, int], context: int) -> str:
        text, strength = printed
        return f"({text})" if strength < context else text

    def _print(self, expr: sympy.Basic) -> tuple[str, int]:
        if isinstance(expr, sympy.Symbol):
            return expr.name, _ATOM
        if expr.is_number and not expr.free_symbols and not isinstance(expr, sympy.Piecewise):
            try:
                value = float(expr)
            except TypeError as exc:  # a constant SymPy cannot evaluate: a function without evalf
                raise ValueError(
                    f"expression: cannot evaluate the constant {expr} as a number for {self.lang}; "
                    "a cell function needs numeric evaluation (see tunekit.cells.spec._Numeric)"
                ) from exc
            return self.number(value), (_MUL if value < 0 else _ATOM)
        if isinstance(expr, sympy.Add):
            return self._add(expr), _ADD
        if isinstance(expr, sympy.Mul):
            return self._mul(expr)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr)
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr), _ATOM
        if isinstance(expr, sympy.core.relational.Relational):
            lhs, rhs = (self._wrap(self._print(arg), _ADD) for arg in expr.args)
            return f"{lhs} {_COMPARISONS[expr.rel_op]} {rhs}", _COMPARE
        if isinstance(expr, at_least):
            a, b = (self._wrap(self._print(arg), _ADD) for arg in expr.args)
            return self.select(f"{a} >= {b}", self.number(1.0), self.number(0.0), self._like(expr)), _ATOM
        if isinstance(expr, select):
            condition, if_true, if_false = (self(arg) for arg in expr.args)
            constant = expr.args[1].is_number and expr.args[2].is_number
            return self.select(condition, if_true, if_false, self._like(expr) if constant else None), _ATOM
        if isinstance(expr, (sympy.Max, sympy.Min)):
            return self._lattice(expr), _ATOM
        if isinstance(expr, (sympy.Heaviside, sympy.sign)):
            return self._step(expr), _ATOM
        if isinstance(expr, sympy.Function) and type(expr) in self.functions:
            args = ", ".join(self(arg) for arg in expr.args)
            return self.functions[type(expr)].format(args), _ATOM
        supported = sorted(getattr(f, "__name__", f) for f in self.functions)
        raise ValueError(
            f"expression: cannot print {type(expr).__name__} ({expr}) as {self.lang}; "
            f"expected + - * /, integer or half powers, where(), comparisons and {supported}"
        )

    def _add(self, expr: sympy.Add) -> str:
        parts: list[str] = []
        for term in expr.as_ordered_terms():
            negative = term.could_extract_minus_sign()
            shown = self._wrap(self._print(-term if negative else term), _ADD + 1)
            if not parts:
                parts.append(f"-{self._wrap(self._print(-term), _MUL + 1)}" if negative else shown)
            else:
                parts.append(f"- {shown}" if negative else f"+ {shown}")
        return " ".join(parts)

    def _mul(self, expr: sympy.Expr) -> tuple[str, int]:
        coeff, rest = expr.as_coeff_Mul()
        sign = "-" if coeff < 0 else ""
        coeff = abs(coeff)
        numerator: list[str] = [] if coeff == 1 else [self.number(coeff)]
        denominator: list[sympy.Expr] = []
        for factor in sympy.Mul.make_args(rest):
            if isinstance(factor, sympy.Pow) and factor.exp.is_number and factor.exp < 0:
                denominator.append(factor.base ** (-factor.exp))
            elif factor != 1:
                numerator.append(self._wrap(self._print(factor), _MUL))
        text = " * ".join(numerator) if numerator else self.number(1.0)
        if denominator:
            if len(denominator) == 1:
                below = self._wrap(self._print(denominator[0]), _MUL + 1)
            else:
                below = "(" + " * ".join(self._wrap(self._print(f), _MUL) for f in denominator) + ")"
            text = f"{text} / {below}"
        return f"{sign}{text}", _MUL

    def _pow(self, expr: sympy.Pow) -> tuple[str, int]:
        base, exponent = expr.args
        if exponent.is_number and exponent < 0:
            return self._mul(sympy.Mul(1, expr, evaluate=False))
        if exponent == sympy.Rational(1, 2):
            return self.functions[_SQRT].format(self(base)), _ATOM
        if exponent.is_Integer and exponent >= 1:
            factor = self._wrap(self._print(base), _MUL + 1)
            return " * ".join([factor] * int(exponent)), _MUL
        raise ValueError(
            f"expression: cannot print the power {expr} as {self.lang}; expected integer or 1/2 exponents"
        )

    def _lattice(self, expr: sympy.Max | sympy.Min) -> str:
        """SymPy's n-ary Max/Min as nested two-argument calls."""
        template = self.functions[sympy.Max if isinstance(expr, sympy.Max) else sympy.Min]
        first, *rest = (self(arg) for arg in expr.args)
        for other in rest:
            first = template.format(f"{first}, {other}")
        return first

    def _step(self, expr: sympy.Heaviside | sympy.sign) -> str:
        """Heaviside(x, h0) (the derivative of Max/Min) and sign(x) (of Abs) as selects on x."""
        x = self._wrap(self._print(expr.args[0]), _ADD)
        zero, one, like = self.number(0.0), self.number(1.0), self._like(expr)
        if isinstance(expr, sympy.sign):
            return self.select(
                f"{x} > {zero}", one, self.select(f"{x} < {zero}", self.number(-1.0), zero, like)
            )
        at_zero = self(expr.args[1]) if len(expr.args) > 1 else self.number(0.5)
        return self.select(f"{x} > {zero}", one, self.select(f"{x} == {zero}", at_zero, zero, like))

    def _piecewise(self, expr: sympy.Piecewise) -> str:
        *pieces, (last, last_condition) = expr.args
        if last_condition is not sympy.true:
            raise ValueError(f"expression: where() needs an 'otherwise' branch, got {expr}")
        text, constant = self(last), last.is_number
        for value, condition in reversed(pieces):
            like = self._like(expr) if constant and value.is_number else None
            text, constant = self.select(self(condition), self(value), text, like), False
        return text


class TorchPrinter(_Printer):
    lang = "torch"
    functions = {
        sigmoid: "torch.sigmoid({})",
        logsigmoid: "torch.nn.functional.logsigmoid({})",
        sympy.tanh: "torch.tanh({})",
        sympy.exp: "torch.exp({})",
        sympy.log: "torch.log({})",
        maximum: "_tk_maximum({})",
        sympy.Max: "_tk_max({})",
        sympy.Min: "_tk_min({})",
        sympy.Abs: "torch.abs({})",
        no_grad: "({}).detach()",
        _SQRT: "torch.sqrt({})",
    }

    def select(self, condition: str, if_true: str, if_false: str, like: str | None = None) -> str:
        if like is not None:
            # torch.where of two Python floats is a tensor of the default dtype (float32), which
            # would round a float64 step's constants; full_like gives the branch like's dtype
            if_true = f"torch.full_like({like}, {if_true})"
        return f"torch.where({condition}, {if_true}, {if_false})"


class TritonPrinter(_Printer):
    lang = "triton"
    functions = {
        sigmoid: "_tk_sigmoid({})",
        logsigmoid: "_tk_logsigmoid({})",
        sympy.tanh: "_tk_tanh({})",
        sympy.exp: "tl.exp({})",
        sympy.log: "tl.log({})",
        maximum: "tl.maximum({})",
        sympy.Max: "tl.maximum({})",
        sympy.Min: "tl.minimum({})",
        sympy.Abs: "tl.abs({})",
        no_grad: "{}",
        _SQRT: "tl.sqrt({})",
    }

    def select(self, condition: str, if_true: str, if_false: str, like: str | None = None) -> str:
        return f"tl.where({condition}, {if_true}, {if_false})"


class CudaPrinter(_Printer):
    lang = "cuda"
    functions = {
        sigmoid: "tk_sigmoid({})",
        logsigmoid: "tk_logsigmoid({})",
        sympy.tanh: "tanhf({})",
        sympy.exp: "expf({})",
        sympy.log: "logf({})",
        maximum: "fmaxf({})",
        sympy.Max: "fmaxf({})",
        sympy.Min: "fminf({})",
        sympy.Abs: "fabsf({})",
        no_grad: "{}",
        _SQRT: "sqrtf({})",
    }

    def number(self, value: float) -> str:
        return f"{float(value)!r}f"  # float literals: a bare 1.0 is a double and drags the math to fp64

    def select(self, condition: str, if_true: str, if_false: str, like: str | None = None) -> str:
        return f"(({condition}) ? {if_true} : {if_false})"


PRINTERS: dict[str, _Printer] = {"torch": TorchPrinter(), "triton": TritonPrinter(), "cuda": CudaPrinter()}


@functools.cache
def _printed(cell: Cell, direction: str, lang: str) -> tuple[tuple[str, str], ...]:
    program = derive.forward_program(cell) if direction == "forward" else derive.backward_program(cell)
    printer = PRINTERS[lang]
    return tuple((target, printer(expr)) for target, expr in program)


def printed_code(cell: Cell, direction: str, lang: str) -> list[tuple[str, str]]:
    """The cell's ``direction`` ("forward"/"backward") program printed for ``lang``."""
    if lang not in PRINTERS:
        raise ValueError(f"lang: got {lang!r}, expected one of {list(LANGS)}")
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction: got {direction!r}, expected 'forward' or 'backward'")
    return list(_printed(cell, direction, lang))
