"""The one place where numeric options are checked: the CLI flags and the matching Python arguments alike.

Each check raises :class:`InvalidOptionError` with one line naming the value, what is allowed and the flag that sets
it, so the CLI prints it and exits with status 2, and Python callers get the same sentence. The checks take plain
values and import nothing heavy, so the command line can run them before it builds a model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, Optional

from .errors import SslzooError


class InvalidOptionError(SslzooError, ValueError):
    """An option or argument outside the values it allows (a batch size of 0, a negative temperature...)."""


def _label(name: str, flag: Optional[str]) -> str:
    """``batch_size (--batch-size)``: the Python name and the flag that sets it (derived from the name by default)."""
    return f"{name} ({flag or '--' + name.replace('_', '-')})"


def int_at_least(name: str, value: Optional[int], minimum: int = 1, *, flag: Optional[str] = None) -> Optional[int]:
    """``value`` when it is an integer >= ``minimum`` (None passes: "not given"); else :class:`InvalidOptionError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidOptionError(f"{_label(name, flag)} must be a whole number of at least {minimum}, got {value!r}.")
    if value < minimum:
        raise InvalidOptionError(f"{_label(name, flag)} must be at least {minimum}, got {value}.")
    return int(value)


def positive(name: str, value: Optional[float], *, flag: Optional[str] = None) -> Optional[float]:
    """``value`` when it is a finite number > 0 (None passes); else :class:`InvalidOptionError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidOptionError(f"{_label(name, flag)} must be a number greater than 0, got {value!r}.")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidOptionError(f"{_label(name, flag)} must be a finite number greater than 0, got {value}.")
    return float(value)


def _each(name: str, values: Optional[Iterable], flag: Optional[str], check: Callable[[Any], Any]):
    if values is None:
        return None
    out = tuple(values)
    if not out:
        raise InvalidOptionError(f"{_label(name, flag)} needs at least one value.")
    return tuple(check(v) for v in out)


def ints_at_least(name: str, values: Optional[Iterable[int]], minimum: int = 1, *,
                  flag: Optional[str] = None) -> Optional[tuple[int, ...]]:
    """Every value of ``values`` through :func:`int_at_least`; an empty list is refused too."""
    return _each(name, values, flag, lambda v: int_at_least(name, v, minimum, flag=flag))


def all_positive(name: str, values: Optional[Iterable[float]], *,
                 flag: Optional[str] = None) -> Optional[tuple[float, ...]]:
    """Every value of ``values`` through :func:`positive`; an empty list is refused too."""
    return _each(name, values, flag, lambda v: positive(name, v, flag=flag))
