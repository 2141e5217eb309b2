"""How notices reach people: library code logs them; the command-line programs show them on stderr.

Library modules call ``logging.getLogger(__name__)`` and never print to stderr themselves, so a program that embeds
sslzoo decides what it shows. The ``sslzoo`` command and the training programs call :func:`show_notices`, which prints
the INFO and WARNING records of their logger tree as ``sslzoo: message`` lines.
"""

from __future__ import annotations

import logging
import sys


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record arrives (a redirect, a test's capture)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns one; the current stderr is always used
        pass


def show_notices(logger_name: str = "sslzoo", prefix: str = "sslzoo") -> None:
    """Print the INFO-and-above records of ``logger_name`` (and its children) on stderr, once per process."""
    logger = logging.getLogger(logger_name)
    if any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        return
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
