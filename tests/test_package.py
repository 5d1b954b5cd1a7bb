"""The package installs as DESIGN §2 lays it out: light parts load without torch, data ships."""

import subprocess
import sys
from importlib import resources

import tunekit


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    # Poisoning sys.modules makes any `import torch` raise ImportError inside the child.
    prelude = "import sys; sys.modules['torch'] = None; sys.modules['triton'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)


def test_solvers_import_without_torch():
    result = _run_without_torch("import tunekit.solvers")
    assert result.returncode == 0, result.stderr


def test_cli_help_loads_without_torch():
    result = _run_without_torch("from tunekit.cli import main; main(['--help'], standalone_mode=False)")
    assert result.returncode == 0, result.stderr


def test_templates_and_profiles_are_package_data():
    assert resources.files("tunekit.templates").joinpath("triton").is_dir()
    assert resources.files("tunekit.hardware_profiles").is_dir()


def test_version_is_a_string():
    assert isinstance(tunekit.__version__, str) and tunekit.__version__.count(".") == 2
