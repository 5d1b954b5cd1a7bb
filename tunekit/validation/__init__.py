"""``tunekit validate``: numerical checks of the layers and compiler checks of the resource models.

* :mod:`.numeric`: the reference layers vs torch.nn and autograd, the triton-fused kernels in
  Triton's interpreter vs the float64 reference (:class:`Check` records);
* :mod:`.emulated`: the CUDA families' tuned kernels in tunekit's CPU emulator vs the float64
  reference (:class:`Check` records);
* :mod:`.compiled`: the triton-fused resource model vs ahead-of-time compiles of single cases
  (:class:`TritonCase`, :func:`predict`, :func:`judge`);
* :mod:`.tuned`: the tuner's top configurations of any family compiled per architecture
  (:func:`triton_records`, :func:`cuda_records`), one :class:`CompileRecord` per kernel entry.
"""

from __future__ import annotations

from tunekit.validation.compiled import (
    DEFAULT_PROFILE,
    SHARED_TOLERANCE,
    CompileCheck,
    Prediction,
    TritonCase,
    compile_case,
    compile_kernel,
    compile_kernels,
    default_cases,
    judge,
    predict,
    register_limit,
    validate_compile,
)
from tunekit.validation.emulated import EMULATED, EMULATOR_PROFILE, EMULATOR_TOL, validate_emulator
from tunekit.validation.numeric import (
    INTERPRETER_TOL,
    REFERENCE_TOL,
    Check,
    cells_from,
    compare,
    kernel_checks,
    validate_interpreter,
    validate_reference,
)
from tunekit.validation.records import CompileRecord, cuda_verdict, write_source
from tunekit.validation.tuned import SAMPLE, Target, cuda_records, sample_problems, targets, triton_records

__all__ = [
    "DEFAULT_PROFILE",
    "EMULATED",
    "EMULATOR_PROFILE",
    "EMULATOR_TOL",
    "INTERPRETER_TOL",
    "REFERENCE_TOL",
    "SAMPLE",
    "SHARED_TOLERANCE",
    "Check",
    "CompileCheck",
    "CompileRecord",
    "Prediction",
    "Target",
    "TritonCase",
    "cells_from",
    "compare",
    "compile_case",
    "compile_kernel",
    "compile_kernels",
    "cuda_records",
    "cuda_verdict",
    "default_cases",
    "judge",
    "kernel_checks",
    "predict",
    "register_limit",
    "sample_problems",
    "targets",
    "triton_records",
    "validate_compile",
    "validate_emulator",
    "validate_interpreter",
    "validate_reference",
    "write_source",
]
