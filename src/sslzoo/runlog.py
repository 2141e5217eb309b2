"""The plumbing every training run shares: device choice, mixed precision, the CSV log, the same-run check.

Used by fine-tuning (:mod:`sslzoo.eval.finetune`) and pre-training (``training.pretrain``), so both pick devices,
autocast, log and refuse a foreign checkpoint the same way.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from .errors import SslzooError
from .files import write_text_atomic

AMP_MODES = ("auto", "bf16", "fp16", "none")


class DeviceError(SslzooError):
    """A device that was asked for and is not there."""


def resolve_device(device: Optional[str] = "auto", *, index: int = 0) -> torch.device:
    """``auto``/None (CUDA when available), ``cpu``, ``cuda`` (the ``index``-th GPU: a process's local rank) or
    ``cuda:N``; a CUDA device where there is none is a :class:`DeviceError`."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device} was asked for, but CUDA is not available here; use --device cpu.")
        if dev.index is None:
            dev = torch.device("cuda", index)
    return dev


def amp_dtype(device: torch.device, amp: Union[bool, str, None]) -> Optional[torch.dtype]:
    """The autocast dtype: mixed precision on CUDA only; ``True``/``auto`` picks bf16 where supported, else fp16.

    ``amp`` is a bool (fine-tuning's ``--no-amp``) or one of ``auto``, ``bf16``, ``fp16``, ``none``/``fp32``/None.
    """
    if device.type != "cuda" or amp in (False, None, "none", "fp32"):
        return None
    if amp in (True, "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    raise ValueError(f"amp must be a bool or one of {AMP_MODES}, got {amp!r}")


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype``, or a context that does nothing when there is none (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_settings(now: dict[str, Any], then: dict[str, Any], *, most: int = 6) -> Optional[str]:
    """The settings that differ between a run and the one that wrote its checkpoint, one ``key: then, now`` each
    (nested sections compared key by key, so a refusal names the one value that changed); None when equal."""
    a, b = flatten_settings(now), flatten_settings(then)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not keys:
        return None
    text = "; ".join(f"{k}: checkpoint {b.get(k)!r}, now {a.get(k)!r}" for k in keys[:most])
    return text + (f"; and {len(keys) - most} more" if len(keys) > most else "")


class CsvLog:
    """A run's ``log.csv``: rows appended as they come, the columns fixed by the first row ever written."""

    def __init__(self, path: Union[str, Path], *, columns: Optional[Sequence[str]] = None) -> None:
        self.path = Path(path)
        self.fields: Optional[list[str]] = list(columns) if columns else None

    def rewind(self, last: float, *, key: str = "iteration") -> None:
        """Drop the rows whose ``key`` is above ``last``: a resumed run repeats them, and one timeline per file keeps
        curves (kNN against epoch) free of duplicate points."""
        if not self.path.exists():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        column = rows[0].index(key)
        kept = rows[:1] + [r for r in rows[1:] if r and float(r[column]) <= last]
        if len(kept) < len(rows):
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(kept)
            write_text_atomic(self.path, out.getvalue())

    def replace(self, rows: Sequence[dict[str, Any]]) -> None:
        """Make the file hold exactly ``rows`` (atomically), e.g. a resumed run's history from its checkpoint."""
        fields = self.fields or (list(rows[0]) if rows else None)
        if fields is None:
            self.path.unlink(missing_ok=True)
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, out.getvalue())
        self.fields = fields

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        if self.fields is None:
            if not new:
                with open(self.path, newline="", encoding="utf-8") as f:
                    self.fields = next(csv.reader(f), None)
            self.fields = self.fields or list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(row)
