"""Pins taken on first use: the sha256 of an entry's first verified file, for entries that publish none.

``$SSLZOO_CACHE/pins.json`` maps a full registry name to ``{"sha256", "source", "revision", "date"}``. Every later
load of that entry is checked against it, so a file that changes upstream is refused instead of loaded silently;
``sslzoo verify --repin NAME`` takes a new pin on purpose.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Optional

from ..atomic import write_text_atomic
from ..cache import cache_dir


def pin_file() -> Path:
    return cache_dir() / "pins.json"


def _read() -> dict[str, dict[str, Any]]:
    path = pin_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a damaged pin file must not block loading; it is rewritten on the next pin
        return {}
    return data if isinstance(data, dict) else {}


def first_use_pin(full_name: str) -> Optional[dict[str, Any]]:
    """The pin recorded for ``full_name`` on its first verified load, or None."""
    pin = _read().get(full_name)
    return pin if isinstance(pin, dict) and isinstance(pin.get("sha256"), str) else None


def record_pin(full_name: str, sha256: str, *, source: str, revision: Optional[str] = None) -> dict[str, Any]:
    pins = _read()
    pins[full_name] = {"sha256": sha256, "source": source, "revision": revision,
                       "date": datetime.date.today().isoformat()}
    _write(pins)
    return pins[full_name]


def forget_pin(full_name: str) -> bool:
    """Drop ``full_name``'s first-use pin; True if there was one."""
    pins = _read()
    if pins.pop(full_name, None) is None:
        return False
    _write(pins)
    return True


def _write(pins: dict[str, dict[str, Any]]) -> None:
    write_text_atomic(pin_file(), json.dumps(pins, indent=2, sort_keys=True) + "\n")
