"""tunekit: constraint-solved, template-generated recurrent kernels tuned for a named GPU.

Public names are imported lazily so that light parts (``tunekit.solvers``, hardware
profiles, the CLI's ``--help``) load without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "rnn": "tunekit.api",
    "LSTM": "tunekit.layers",
    "GRU": "tunekit.layers",
    "SLSTM": "tunekit.layers",
    "RNN": "tunekit.layers",
    "Elman": "tunekit.layers",
    "get_cell": "tunekit.cells",
    "CELLS": "tunekit.cells",
    "load_profile": "tunekit.hardware",
    "tune": "tunekit.tuning",
    "Problem": "tunekit.problem",
    "load": "tunekit.generate_package",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunekit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
