"""The CUDA families' host modules: one rendered text for tunekit's runtime and for generated packages.

A CUDA family's host code (allocate the buffers, launch the entries in order, wrap them in an
``autograd.Function``) is rendered from ``templates/generate/cuda_<family>_host.py.j2`` for one
configuration, with the configuration's plan (buffer sizes, entry names, each entry's parameter
names) written into it as Python literals. The text imports only torch, so:

* tunekit's runtime (:func:`load`) imports it from memory and calls its ``run(launch, ...)`` with a
  ``launch`` that goes to tunekit's CUDA runner or emulator;
* ``tunekit generate`` writes the same bytes into the package as ``_host.py``, whose ``_runtime.py``
  calls ``run(_cuda.launch, ...)``.

What the package runs is therefore what tunekit's tests run, byte for byte.
"""

from __future__ import annotations

import hashlib
import linecache
import re
import sys
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["literal", "load"]

_LOADED: dict[str, ModuleType] = {}
_LOCK = threading.Lock()


def literal(value: Any) -> str:
    """``value`` as Python source, deterministically (dict keys sorted; tuples stay tuples)."""
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{literal(k)}: {literal(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, tuple):
        items = [literal(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise ValueError(f"value: got {type(value).__name__}, expected None, a number, a string or a container")


def load(source: str, name: str) -> ModuleType:
    """Import the rendered host module ``source`` (cached by its SHA-256), named after ``name`` (the
    configuration's canonical name) in tracebacks. Nothing is written to disk."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    with _LOCK:
        found = _LOADED.get(digest)
        if found is not None:
            return found
        module_name = f"tunekit_generated.host_{re.sub(r'[^A-Za-z0-9_]', '_', name)}_{digest}"
        filename = f"<tunekit host {name} {digest}>"
        module = ModuleType(module_name)
        module.__file__ = filename
        # tracebacks and inspect read the text from linecache (a file name in <> is never stat'ed)
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        sys.modules[module_name] = module  # classes defined in it resolve their module
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        _LOADED[digest] = module
        return module
