"""Shared test setup, done before any test module imports torch or triton.

TRITON_INTERPRET must be set before triton is first imported: Triton reads it when a kernel is
decorated, and every Triton test on this CPU-only CI runs in the interpreter.

TUNEKIT_DB: a fresh tuning database per test session, never the user's.

OMP_NUM_THREADS=1: the tests run many small-tensor ops on a 2-core machine shared with other jobs;
torch's intra-op threads then only spin and wait (measured here: the 2048-step sLSTM test took
54.8 s with 2 threads under load, 5.2 s with 1). torch reads it once, when it is first imported.

Hypothesis: with the ``CI`` environment variable set (``.ci/run`` sets ``CI=1``) the ``ci`` profile
runs: derandomized (the examples follow from each test's name, so one commit gives one result), no
example database (nothing carried between runs), a fixed example budget. Local runs use ``dev``:
random seeds and the ``.hypothesis/`` database, so they keep exploring. Both print the
``@reproduce_failure(...)`` line of a failing example; ``--hypothesis-seed=N`` replays a local run.
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
from hypothesis import settings  # noqa: E402

# a test's own @settings(max_examples=...) takes precedence; this budget covers the others
settings.register_profile("ci", derandomize=True, database=None, max_examples=100, print_blob=True)
settings.register_profile("dev", print_blob=True)
HYPOTHESIS_PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(HYPOTHESIS_PROFILE)

NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)


@pytest.fixture(scope="session")
def nvcc() -> str:
    """Path of nvcc; tests that compile CUDA are skipped where it is missing."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    return NVCC


def pytest_report_header(config: pytest.Config) -> str:
    current = settings()
    return (
        f"tunekit: hypothesis profile {HYPOTHESIS_PROFILE!r} (derandomize={current.derandomize}, "
        f"database={'none' if current.database is None else 'local'}); CI={os.environ.get('CI', '')!r}"
    )
