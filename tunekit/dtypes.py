"""The element dtypes tunekit's kernels take, in one table: names, sizes, short names, torch dtypes.

Every stage names a dtype by its torch name ("float32", "float16", "bfloat16"); canonical names
and Triton pointer types use the short name ("fp32", "fp16", "bf16", which is also Triton's type
name). torch is imported only when a torch dtype is asked for, so the light stages stay torch-free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CUDA_TYPES", "DTYPE_BYTES", "DTYPE_NAMES", "DTYPE_SHORT", "dtype_name", "torch_dtype"]

DTYPE_NAMES: tuple[str, ...] = ("float32", "float16", "bfloat16")
# Bytes per element of the stored dtype (R, Wx, states).
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}
# Short names: canonical configuration names and Triton's element types ("*bf16" pointers).
DTYPE_SHORT: dict[str, str] = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
# Element types of templates/cuda/tk_cuda.cuh (tk::bf16 is __nv_bfloat16, tk::f16 is __half).
CUDA_TYPES: dict[str, str] = {"float32": "float", "float16": "tk::f16", "bfloat16": "tk::bf16"}


def dtype_name(dtype: Any) -> str:
    """The name of ``dtype`` (a torch.dtype or one of DTYPE_NAMES); ValueError naming the known ones."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise ValueError(f"dtype: got {dtype!r}, expected one of {list(DTYPE_NAMES)}")
    return name


def torch_dtype(dtype: Any) -> Any:
    """The torch.dtype of ``dtype`` (a name or a torch.dtype)."""
    import torch

    return getattr(torch, dtype_name(dtype))
