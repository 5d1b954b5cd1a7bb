"""Is Triton's interpreter on in this process? The one place that asks.

``TRITON_INTERPRET=1`` (read by Triton into ``triton.knobs.runtime.interpret``) makes ``@triton.jit``
produce InterpretedFunctions that run on CPU tensors. Two facts follow, and both matter:

* :func:`interpreting`: kernels decorated now are interpreted (the knob, or the environment
  variable for a triton not imported yet);
* :func:`library_interpreted`: triton.language's own ``@jit`` helpers (``tl.sigmoid``, ...) were
  decorated when triton was imported under the interpreter, so nothing in this process can be
  compiled ahead of time: such compiles run in a child process without the variable
  (:func:`environment_without_interpreter`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["INTERPRET_ENV", "environment_without_interpreter", "interpreting", "library_interpreted"]

INTERPRET_ENV = "TRITON_INTERPRET"


def interpreting() -> bool:
    """True when ``@triton.jit`` kernels run in Triton's interpreter here."""
    if "triton" not in sys.modules:  # not imported yet: the variable decides what it will do
        return os.environ.get(INTERPRET_ENV) == "1"
    import triton

    return bool(triton.knobs.runtime.interpret)


def library_interpreted() -> bool:
    """True when triton.language's own jit functions are InterpretedFunctions (imported under the
    interpreter): an ahead-of-time compile in this process would fail on them."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.sigmoid, InterpretedFunction)


def environment_without_interpreter() -> dict[str, str]:
    """This process's environment minus TRITON_INTERPRET, for a child that compiles."""
    return {k: v for k, v in os.environ.items() if k != INTERPRET_ENV}
