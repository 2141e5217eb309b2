"""What the evaluation protocols refuse, checked without torch: the command line runs these before any heavy import.

kNN (``k`` >= 1, a temperature > 0, a known preset), the linear probe (epochs >= 1, learning rates > 0, weight decays
>= 0) and the batch size of both; :mod:`sslzoo.eval.knn`, :mod:`sslzoo.eval.linear` and
:mod:`sslzoo.eval.protocols` call the same functions, so Python callers get the same sentences.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from ..validation import InvalidOptionError, all_positive, int_at_least, ints_at_least, positive
from .protocol_table import protocols_of


def check_knn_options(k: Union[int, Sequence[int], None], temperature: Optional[float]) -> None:
    """Refuse a neighbour count below 1 or a vote temperature that is not > 0 (the CLI calls this before any work)."""
    ints_at_least("k", [k] if isinstance(k, int) else k)
    positive("temperature", temperature)


def check_linear_options(
    *, epochs: Optional[int], lrs: Optional[Sequence[float]], weight_decays: Optional[Sequence[float]] = None,
    batch_size: Optional[int] = None,
) -> None:
    """Refuse an epoch count or batch below 1, a learning rate that is not > 0 and a negative weight decay."""
    int_at_least("epochs", epochs)
    all_positive("lrs", lrs)
    int_at_least("batch_size", batch_size)
    if weight_decays is not None:
        if not list(weight_decays) or any(not wd >= 0 for wd in weight_decays):
            raise InvalidOptionError(f"weight_decays must be one or more numbers >= 0, got {list(weight_decays)}.")


def check_knn_eval_options(*, preset: str, k: Optional[Sequence[int]], temperature: Optional[float],
                           batch_size: int) -> None:
    """Everything :func:`~sslzoo.eval.protocols.knn_eval` refuses, checked before a model is built."""
    presets = [p.name for p in protocols_of("knn")]
    if preset not in presets:
        raise InvalidOptionError(f"Unknown kNN preset {preset!r}; use one of {', '.join(presets)}.")
    check_knn_options(k, temperature)
    int_at_least("batch_size", batch_size)


def check_linear_eval_options(*, batch_size: int, **probe_kwargs: Any) -> None:
    """Everything :func:`~sslzoo.eval.protocols.linear_eval` refuses, checked before a model is built."""
    int_at_least("batch_size", batch_size)
    check_linear_options(epochs=probe_kwargs.get("epochs"), lrs=probe_kwargs.get("lrs"),
                         weight_decays=probe_kwargs.get("weight_decays"))
