"""What ``ptxas -v`` says about each entry function, and where a kernel touches local memory.

ptxas is the assembler behind every path here (Triton's bundled one, nvcc's ``-Xptxas -v``,
NVRTC's ``--ptxas-options=-v``); all print, per entry function, a "Compiling entry function" line,
a "Function properties" block (stack frame, spill stores and loads) and a "Used N registers, ...
bytes smem" line. The prefix differs ("ptxas info    :", "ptxas-blackwell info    :", NVRTC's
"ptxas         ."), so the patterns below only anchor on the words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "PtxasUsage",
    "local_memory_instructions",
    "parse_ptxas_log",
    "parse_ptxas_log_all",
    "ptx_function",
    "sass_function",
]

_ENTRY = re.compile(r"Compiling entry function '(?P<name>[^']+)' for '(?P<arch>sm_\w+)'")
_FRAME = re.compile(
    r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads"
)
_USED = re.compile(r"Used (?P<regs>\d+) registers")
_SMEM = re.compile(r"(?P<smem>\d+) bytes smem")
_LMEM = re.compile(r"(?P<lmem>\d+) bytes lmem")
_TIME = re.compile(r"Compile time = (?P<ms>[\d.]+) ms")
# Local memory in PTX (ld.local / st.local, any width and type) and in SASS (LDL / STL).
_LOCAL_PTX = re.compile(r"\b(?:ld|st)\.local\b[\w.]*")
_LOCAL_SASS = re.compile(r"\b(?:LDL|STL)(?:\.[\w]+)*\b")


@dataclass(frozen=True)
class PtxasUsage:
    """Resource usage of one entry function, as ``ptxas -v`` reports it."""

    function: str
    arch: str  # e.g. "sm_80", "sm_90a"
    registers: int  # per thread
    spill_stores_bytes: int
    spill_loads_bytes: int
    stack_frame_bytes: int  # local memory per thread for the stack (spills live here)
    static_shared_bytes: int  # __shared__ arrays; Triton kernels use dynamic shared memory, so 0
    local_bytes: int  # local memory per thread: max(stack frame, reported lmem)
    ptxas_ms: float = 0.0  # ptxas's own "Compile time" for this function (0 when not printed)

    @property
    def spill_bytes(self) -> int:
        return self.spill_stores_bytes + self.spill_loads_bytes


def _blocks(text: str) -> list[tuple[str, str, list[str]]]:
    if not isinstance(text, str):
        raise ValueError(f"text: expected the ptxas log as str, received {type(text).__name__}")
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            blocks.append((m["name"], m["arch"], []))
        elif blocks:
            blocks[-1][2].append(line)
    if not blocks:
        raise ValueError("text: no 'Compiling entry function' line in the ptxas log; was ptxas run with -v?")
    return blocks


def _usage(name: str, arch: str, lines: list[str]) -> PtxasUsage:
    body = "\n".join(lines)
    used = _USED.search(body)
    if used is None:
        raise ValueError(f"text: no 'Used N registers' line for {name!r} in the ptxas log")
    frame, smem, lmem, took = _FRAME.search(body), _SMEM.search(body), _LMEM.search(body), _TIME.search(body)
    stack = int(frame["stack"]) if frame else 0
    return PtxasUsage(
        function=name,
        arch=arch,
        registers=int(used["regs"]),
        spill_stores_bytes=int(frame["stores"]) if frame else 0,
        spill_loads_bytes=int(frame["loads"]) if frame else 0,
        stack_frame_bytes=stack,
        static_shared_bytes=int(smem["smem"]) if smem else 0,
        local_bytes=max(stack, int(lmem["lmem"]) if lmem else 0),
        ptxas_ms=float(took["ms"]) if took else 0.0,
    )


def parse_ptxas_log(text: str, function: str | None = None) -> PtxasUsage:
    """Parse the ``ptxas -v`` log of one entry function (the first one, or ``function`` if given).

    Lines from other functions are ignored. Raises ValueError when the function is not in the log.
    """
    blocks = _blocks(text)
    chosen = [b for b in blocks if function is None or b[0] == function]
    if not chosen:
        names = ", ".join(b[0] for b in blocks)
        raise ValueError(f"function: {function!r} is not in the ptxas log; it has {names}")
    return _usage(*chosen[0])


def parse_ptxas_log_all(text: str) -> dict[str, PtxasUsage]:
    """Every entry function of a ``ptxas -v`` log, by name, in the log's order."""
    return {name: _usage(name, arch, lines) for name, arch, lines in _blocks(text)}


def ptx_function(ptx: str, name: str) -> str:
    """The text of entry ``name`` in a PTX module: from its ``.entry`` line to the next entry or
    function definition (or end), so that a non-inlined ``.func``'s local memory is not the entry's."""
    start = re.search(rf"^\s*\.(?:visible\s+)?\.?entry\s+{re.escape(name)}\s*\(", ptx, re.MULTILINE)
    if start is None:
        raise ValueError(f"name: no .entry {name!r} in the PTX")
    following = re.compile(
        r"^\s*(?://\s*\.globl|(?:\.(?:visible|weak|extern)\s+)?\.(?:entry|func)\b)", re.MULTILINE
    )
    end = following.search(ptx, start.end())
    return ptx[start.start() : end.start() if end else len(ptx)]


def sass_function(sass: str, name: str) -> str:
    """The SASS of function ``name`` in ``cuobjdump -sass`` output: its "Function : name" section."""
    start = re.search(rf"^\s*Function : {re.escape(name)}\s*$", sass, re.MULTILINE)
    if start is None:
        raise ValueError(f"name: no 'Function : {name}' in the SASS")
    end = re.compile(r"^\s*Function : ", re.MULTILINE).search(sass, start.end())
    return sass[start.start() : end.start() if end else len(sass)]


def local_memory_instructions(text: str) -> list[str]:
    """Local-memory loads and stores in PTX (``ld.local``/``st.local``) or SASS (``LDL``/``STL``).

    A kernel free of spills and stack arrays has none; ptxas's counters say how many bytes, this
    says which instructions (tests assert the list is empty)."""
    return _LOCAL_PTX.findall(text) + _LOCAL_SASS.findall(text)
