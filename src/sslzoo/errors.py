"""Errors a user can cause. The CLI prints their message and exits non-zero, without a traceback."""

from __future__ import annotations


class SslzooError(Exception):
    """Base class of every error whose message tells the user what to do."""


class UnknownModelError(SslzooError, KeyError):
    """A model name that is neither in the registry, an alias, a timm model nor a hub reference."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(SslzooError, FileNotFoundError):
    """No source could provide the weights that were asked for."""


class ChecksumError(SslzooError):
    """A weight file whose sha256 differs from the pinned one."""


class UnsafeCheckpointError(SslzooError):
    """A checkpoint that could only be read by executing pickled code."""


class CheckpointFormatError(SslzooError, ValueError):
    """A checkpoint that is truncated, corrupt or of an unexpected layout."""
