"""The problems a recipe, a method setting or a training file can cause, shared by the data, views, frameworks and
methods.

Anything a user, a recipe or a file can cause is an :class:`sslzoo.errors.SslzooError` (the command line prints it
as one line and exits 2); ``ValueError``/``TypeError`` alone mean misuse of the Python API. Both classes here are
also ``ValueError``s, so code that catches those keeps working.
"""

from __future__ import annotations

from sslzoo.errors import SslzooError


class UnreadableImageError(SslzooError, OSError):
    """A training image file could not be decoded and ``--strict-data`` is set."""


class MethodConfigError(SslzooError, ValueError):
    """A method, framework or head setting that does not exist or cannot work."""


class ViewConfigError(MethodConfigError):
    """A view-generation setting that cannot work (say, an empty crop scale or a grid the image does not divide)."""
