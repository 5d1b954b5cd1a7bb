"""Shared test setup. TRITON_INTERPRET must be set before triton is first imported: Triton reads it
when a kernel is decorated, and every Triton test on this CPU-only CI runs in the interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import shutil  # noqa: E402

import pytest  # noqa: E402

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)


@pytest.fixture(scope="session")
def nvcc() -> str:
    """Path of nvcc; tests that compile CUDA are skipped where it is missing."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    return NVCC
