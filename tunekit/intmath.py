"""Integer helpers the constraint models, kernels and launchers share (one copy each)."""

from __future__ import annotations

__all__ = ["next_pow2"]


def next_pow2(n: int, floor: int = 1) -> int:
    """The smallest power of two >= max(n, floor), e.g. next_pow2(48) == 64, next_pow2(5, 16) == 16."""
    n = int(n)
    return max(floor, 1 << (n - 1).bit_length() if n > 1 else 1)
