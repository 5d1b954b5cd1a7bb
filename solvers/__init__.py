"""Integer-CSP library (installed as ``tunekit.solvers``); needs neither torch nor a GPU.

Declare variables with finite domains, add named constraints (each with the hardware fact behind
it), optionally an objective, then ask any backend ("native": propagation, then numpy over the
narrowed box, with a depth-first search over the outer variables where it is large; "cpsat":
OR-tools CP-SAT; "vector": numpy over the Cartesian product, falling back to "native" beyond its
size or exactness limits; "brute": the Cartesian product, the referee)::

    from tunekit.solvers import Model, PowersOfTwo, Range, ceil_div, round_up, solve, top_k, explain

    m = Model("triton-fused")
    bb = m.int_var("block_b", PowersOfTwo(16, 256))
    warps = m.int_var("num_warps", PowersOfTwo(1, 32))
    regs = m.int_var("regs_per_thread", Range(32, 255))
    m.add("threads_per_block", warps * 32 <= 1024, why="CUDA: at most 1024 threads per block")
    # registers are allocated per warp in units of 256: round up before summing over warps
    m.add("register_file", warps * round_up(regs * 32, 256) <= 65536, why="64K registers per SM")
    m.add("tile_fits", bb * 4 <= warps * 32, why="one batch row per 4 threads (example)")
    m.minimize(ceil_div(bb * 96, 128) + regs)
    best = solve(m)                       # {"block_b": 16, "num_warps": 2, "regs_per_thread": 32}
    best3 = top_k(m, 3, backend="cpsat")  # same list from every backend
    m.add("too_big", bb >= 512, why="example conflict")
    explain(m)                            # ["too_big"]: it conflicts with block_b's domain alone

Formula helpers (``ceil_div``, ``floor_div``, ``round_up``, ``Min``, ``Max``) take plain ints
and return ints, or expressions and return expressions, so resource formulas work on both.
A comparison of expressions builds a constraint; expressions refuse ``bool()`` so that a mistaken
``if x < 3:`` raises TypeError. ``constraint.holds(a)``, ``constraint.sides(a)`` and
``expr.evaluate(a)`` evaluate at an assignment ``a`` (a dict name -> int).
"""

from . import brute
from .api import BACKENDS, enumerate_all, explain, solve, top_k
from .constraints import AllOf, AnyOf, Compare, Constraint, Divides, Implies, Not, Truth
from .domains import DivisorsOf, Domain, Multiples, PowersOfTwo, Range, Values
from .expr import Expr, Max, Min, Var, ceil_div, floor_div, round_up
from .model import Model, NamedConstraint, Objective

__all__ = [
    "BACKENDS",
    "AllOf",
    "AnyOf",
    "Compare",
    "Constraint",
    "Divides",
    "DivisorsOf",
    "Domain",
    "Expr",
    "Implies",
    "Max",
    "Min",
    "Model",
    "Multiples",
    "NamedConstraint",
    "Not",
    "Objective",
    "PowersOfTwo",
    "Range",
    "Truth",
    "Values",
    "Var",
    "brute",
    "ceil_div",
    "enumerate_all",
    "explain",
    "floor_div",
    "round_up",
    "solve",
    "top_k",
]
