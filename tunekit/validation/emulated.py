"""The CUDA families in tunekit's CPU emulator against the float64 reference.

:func:`validate_emulator` tunes each cell's small problem for one GPU profile (forward and
backward), runs the family's kernels through ``tunekit.api.rnn`` on CPU tensors, which the emulator
runs from the kernels' own CUDA source under the profile's limits (``TUNEKIT_CUDA_EMULATOR=1`` must
be set), and compares all states, final states and every gradient with the float64 reference
(:func:`tunekit.validation.numeric.kernel_checks`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from tunekit.validation.numeric import Check, kernel_checks

__all__ = ["EMULATED", "EMULATOR_PROFILE", "EMULATOR_TOL", "validate_emulator"]

# dtype -> (rtol relative to max|reference|, absolute floor) of the CUDA families in the emulator, from
# their roundings (u: the operand format's unit roundoff; tests/test_cuda_alternating.py derives
# them): float32 runs its products as tf32 (u = 2^-11), float16 rounds y, dg and every stored state
# (u = 2^-11), bfloat16 the same with u = 2^-8. The cells are contractive, so the per-step errors do
# not compound; measured at most 1.6u over every cell, output and gradient at T=13. Bound: 8u.
EMULATOR_TOL = {"float32": (4e-3, 1e-5), "float16": (4e-3, 1e-4), "bfloat16": (3.1e-2, 1e-3)}

# The problem each cell is checked at: odd sizes on purpose (B=3 below every batch tile, D=21 pads
# every M/N/K tile, two heads), T=5 steps (about 1 s per family, cell and dtype in the emulator).
EMULATED = {"batch": 3, "steps": 5, "heads": 2, "head_dim": 21}
# The profile tuned for when none is named: sm_90, the newest architecture the kernels target.
EMULATOR_PROFILE = "h100"


def validate_emulator(
    family: str,
    cells: Sequence[str],
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    gpu: Any = EMULATOR_PROFILE,
) -> list[Check]:
    """``family``'s tuned kernels (the cost model's best on ``gpu`` for each cell and dtype at
    :data:`EMULATED`) in the emulator vs the float64 reference: states, final states, every
    gradient. RuntimeError when the emulator is not enabled; NoFeasibleConfig when nothing fits."""
    from tunekit.api import rnn
    from tunekit.cuda import EMULATOR_ENV, emulator_enabled
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import tune

    if not emulator_enabled():
        raise RuntimeError(f"{family} validation on CPU needs {EMULATOR_ENV}=1 (tunekit's CUDA emulator)")
    profile = load_profile(gpu)
    size = EMULATED
    checks: list[Check] = []
    for cell in cells:
        for dtype in dtypes:
            problem = Problem(cell, size["batch"], size["heads"], size["head_dim"], dtype, "both")
            config = tune(problem, profile, backend=family, top=1).config
            run = functools.partial(rnn, cell=cell, backend=family, config=config)
            checks += kernel_checks(family, cell, dtype, run, EMULATOR_TOL[dtype], **size)
    return checks
