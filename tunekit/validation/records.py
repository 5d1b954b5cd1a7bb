"""The compile record every compiler check produces (Triton and CUDA alike), its verdicts, and the
rendered sources the records point to.

A :class:`CompileRecord` is one kernel entry of one configuration compiled for one architecture by
one tool: the model's prediction beside the compiler's figures and a verdict. ``as_dict`` is the
JSON object ``tunekit validate --json`` prints (issue 9 item 5): ``name``, ``kernel``, ``arch``,
``source``, ``predicted`` {registers_per_thread, shared_memory_bytes_per_block, and whatever else
the family's ``predicted`` gives, e.g. cuda-fused's registers_estimate}, ``compiled``
{registers, static_shared_bytes, dynamic_shared_bytes, shared_memory_bytes, spill_bytes,
stack_frame_bytes}, ``verdict``, ``passed``, with ``kind: "compile"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.files import write_atomic

__all__ = ["CompileRecord", "cuda_verdict", "failed_record", "write_source"]

_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CompileRecord:
    """The model beside the compiler for one kernel entry, architecture and tool."""

    name: str  # the configuration's (the program's) canonical name
    kernel: str  # the entry point
    family: str
    gpu: str  # the profile tuned for and whose limits judge this arch
    arch: int
    tool: str  # e.g. "nvrtc 13.5", "nvcc 13.0.88", "triton 3.9.0"
    source: str  # path of the rendered source file
    predicted: Mapping[str, int]  # registers_per_thread (upper bound), shared_memory_bytes_per_block
    compiled: Mapping[str, int] | None  # None when the compile failed
    verdict: str
    passed: bool
    seconds: float = 0.0
    cached: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # tool-specific notes (e.g. "sass")

    def as_dict(self) -> dict[str, Any]:
        out = {
            "kind": "compile",
            "name": self.name,
            "kernel": self.kernel,
            "family": self.family,
            "gpu": self.gpu,
            "arch": f"sm_{self.arch}",
            "tool": self.tool,
            "source": self.source,
            "predicted": dict(self.predicted),
            "compiled": None if self.compiled is None else dict(self.compiled),
            "verdict": self.verdict,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
        }
        return out | dict(self.extra)


def compiled_figures(registers: int, static: int, dynamic: int, spill: int, stack: int) -> dict[str, int]:
    """The ``compiled`` object: shared_memory_bytes is static (ptxas) + dynamic (the launcher's)."""
    return {
        "registers": registers,
        "static_shared_bytes": static,
        "dynamic_shared_bytes": dynamic,
        "shared_memory_bytes": static + dynamic,
        "spill_bytes": spill,
        "stack_frame_bytes": stack,
    }


def cuda_verdict(predicted: Mapping[str, int], compiled: Mapping[str, int]) -> tuple[str, bool]:
    """(verdict, passed) for a CUDA kernel the model accepted (DESIGN §6): it fails when the kernel
    spills or uses a stack frame, when ptxas's registers exceed the model's bound, or when shared
    memory (ptxas static + launcher dynamic) differs from the model's at all."""
    wrong = []
    if compiled["spill_bytes"]:
        wrong.append(f"spills {compiled['spill_bytes']} B")
    if compiled["stack_frame_bytes"]:
        wrong.append(f"uses a {compiled['stack_frame_bytes']} B stack frame")
    if compiled["registers"] > predicted["registers_per_thread"]:
        wrong.append(
            f"{compiled['registers']} registers > the model's bound {predicted['registers_per_thread']}"
        )
    if compiled["shared_memory_bytes"] != predicted["shared_memory_bytes_per_block"]:
        wrong.append(
            f"shared memory {compiled['shared_memory_bytes']} B != the model's "
            f"{predicted['shared_memory_bytes_per_block']} B"
        )
    if wrong:
        return "MODEL WRONG: accepted, but " + "; ".join(wrong), False
    return "ok", True


def failed_record(base: Mapping[str, Any], error: Exception) -> CompileRecord:
    """A record for a compile that failed: no figures, a failing verdict with the error's first line."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CompileRecord(**base, compiled=None, verdict=f"COMPILE FAILED: {first[:300]}", passed=False)


def write_source(directory: str | os.PathLike, stem: str, suffix: str, text: str) -> Path:
    """Write a rendered kernel atomically as ``directory/<stem><suffix>`` and return its path.

    ``stem`` is a canonical name: letters, digits, ``.``, ``_``, ``-`` only (never a path); an
    unchanged file is not rewritten."""
    if not _SAFE_STEM.fullmatch(stem) or ".." in stem:
        raise ValueError(f"name: got {stem!r}, expected a canonical name (letters, digits, '.', '_', '-')")
    path = Path(directory) / f"{stem}{suffix}"
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass  # unreadable or not text: rewritten below
    write_atomic(path, text)
    return path
