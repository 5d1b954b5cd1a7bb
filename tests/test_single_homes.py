"""The one home of each helper that had copies: dtype tables, next power of two, Triton's interpreter."""

from __future__ import annotations

import pytest
import torch

from tunekit.dtypes import CUDA_TYPES, DTYPE_BYTES, DTYPE_NAMES, DTYPE_SHORT, dtype_name, torch_dtype
from tunekit.intmath import next_pow2
from tunekit.triton_interpreter import (
    INTERPRET_ENV,
    environment_without_interpreter,
    interpreting,
    library_interpreted,
)


def test_every_dtype_table_covers_the_same_names():
    for table in (DTYPE_BYTES, DTYPE_SHORT, CUDA_TYPES):
        assert tuple(table) == DTYPE_NAMES
    assert [torch_dtype(n).itemsize for n in DTYPE_NAMES] == [DTYPE_BYTES[n] for n in DTYPE_NAMES]


def test_dtype_names_come_from_names_or_torch_dtypes_and_bad_ones_are_named():
    assert dtype_name(torch.bfloat16) == "bfloat16" and dtype_name("float16") == "float16"
    assert torch_dtype("float32") is torch.float32 and torch_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match=r"dtype: got torch.float64, expected one of \['float32'"):
        dtype_name(torch.float64)


POW2_CASES = [(1, 1, 1), (2, 1, 2), (3, 1, 4), (48, 1, 64), (64, 1, 64), (65, 1, 128), (5, 16, 16), (0, 1, 1),
              (17, 16, 32)]  # fmt: skip


@pytest.mark.parametrize("n,floor,expected", POW2_CASES)
def test_next_pow2(n, floor, expected):
    assert next_pow2(n, floor) == expected


def test_the_tests_run_in_triton_s_interpreter_and_children_compile_without_it():
    # tests/conftest.py sets TRITON_INTERPRET=1 before triton is imported
    assert interpreting() and library_interpreted()
    assert INTERPRET_ENV not in environment_without_interpreter()
