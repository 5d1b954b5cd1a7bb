"""Finite integer domains: the set of values one variable may take.

Every domain is an immutable value that lists its members in ascending order; an empty domain is
a modelling error and raises ValueError when it is built, so no solver ever sees one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Domain", "DivisorsOf", "Multiples", "PowersOfTwo", "Range", "Values"]


def _check_int(arg: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{arg}: expected an int, got {value!r} ({type(value).__name__})")
    return value


class Domain:
    """A non-empty, sorted tuple of distinct ints (``values``), plus how it was described."""

    __slots__ = ("values", "_text")

    def __init__(self, values: Iterable[int], text: str, empty_reason: str) -> None:
        members = tuple(sorted(set(values)))
        if not members:
            raise ValueError(f"{text}: empty domain ({empty_reason}); expected at least one value")
        self.values: tuple[int, ...] = members
        self._text = text

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_text"):
            raise AttributeError(f"{type(self).__name__} is immutable")
        object.__setattr__(self, name, value)

    def __iter__(self) -> Iterator[int]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and self.values == other.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return self._text

    @property
    def lo(self) -> int:
        """Smallest member."""
        return self.values[0]

    @property
    def hi(self) -> int:
        """Largest member."""
        return self.values[-1]


class Range(Domain):
    """All integers ``lo <= v <= hi`` (both ends included)."""

    __slots__ = ()

    def __init__(self, lo: int, hi: int) -> None:
        lo, hi = _check_int("lo", lo), _check_int("hi", hi)
        super().__init__(range(lo, hi + 1), f"Range({lo}, {hi})", f"lo={lo} > hi={hi}")


class Values(Domain):
    """An explicit set of integers (duplicates are dropped, order does not matter)."""

    __slots__ = ()

    def __init__(self, values: Iterable[int]) -> None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"values: expected an iterable of ints, got {values!r}")
        given = [_check_int("values[]", v) for v in values]
        super().__init__(given, f"Values({sorted(set(given))})", "no values given")


class PowersOfTwo(Domain):
    """Powers of two ``2**k`` with ``lo <= 2**k <= hi`` (``lo`` and ``hi`` need not be powers)."""

    __slots__ = ()

    def __init__(self, lo: int, hi: int) -> None:
        lo, hi = _check_int("lo", lo), _check_int("hi", hi)
        powers = (1 << k for k in range(max(hi, 1).bit_length()))
        text = f"PowersOfTwo({lo}, {hi})"
        super().__init__((p for p in powers if lo <= p <= hi), text, f"no power of two in [{lo}, {hi}]")


class DivisorsOf(Domain):
    """Positive divisors of ``n`` (``n >= 1``), e.g. the tile sizes that split a dimension evenly."""

    __slots__ = ()

    def __init__(self, n: int) -> None:
        n = _check_int("n", n)
        if n < 1:
            raise ValueError(f"n: DivisorsOf needs n >= 1, got {n}")
        small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
        super().__init__(small + [n // d for d in small], f"DivisorsOf({n})", "no divisors")


class Multiples(Domain):
    """Multiples of ``step`` (``step >= 1``) in ``[lo, hi]``, e.g. thread counts in whole warps."""

    __slots__ = ()

    def __init__(self, step: int, lo: int, hi: int) -> None:
        step, lo, hi = _check_int("step", step), _check_int("lo", lo), _check_int("hi", hi)
        if step < 1:
            raise ValueError(f"step: Multiples needs step >= 1, got {step}")
        first = -(-lo // step) * step
        text = f"Multiples({step}, {lo}, {hi})"
        super().__init__(range(first, hi + 1, step), text, f"no multiple of {step} in [{lo}, {hi}]")
