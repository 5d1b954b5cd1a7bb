"""Shared test setup, done before any test module imports torch or triton.

TRITON_INTERPRET must be set before triton is first imported: Triton reads it when a kernel is
decorated, and every Triton test on this CPU-only CI runs in the interpreter.

TUNEKIT_DB: a fresh tuning database per test session, never the user's.

OMP_NUM_THREADS=1: the tests run many small-tensor ops on a 2-core machine shared with other jobs;
torch's intra-op threads then only spin and wait (measured here: the 2048-step sLSTM test took
54.8 s with 2 threads under load, 5.2 s with 1). torch reads it once, when it is first imported.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# layers with backend="auto" record their decisions in the tuning database: tests never write the
# user's own (a test that reads or writes one sets TUNEKIT_DB to its own tmp_path)
os.environ.setdefault(
    "TUNEKIT_DB", os.path.join(__import__("tempfile").mkdtemp(prefix="tunekit-tests-"), "tuning.sqlite")
)

import shutil  # noqa: E402

import pytest  # noqa: E402

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)


@pytest.fixture(scope="session")
def nvcc() -> str:
    """Path of nvcc; tests that compile CUDA are skipped where it is missing."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    return NVCC
