"""A file held to its sha256: the registry's pin, a first-use pin, or the hash a hub folder's config records."""

from __future__ import annotations

from typing import Optional

from ..errors import ChecksumError
from ..files import PathLike, sha256_file


def verify_sha256(path: PathLike, expected: Optional[str], *, recorded_in: Optional[PathLike] = None) -> str:
    """Hash ``path``; raise if it differs from ``expected`` (when one is pinned). Returns the actual hash.

    ``recorded_in`` names the ``config.json`` that recorded ``expected``, for a hub folder's own hash.
    """
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        if recorded_in is not None:
            raise ChecksumError(
                f"{path} has sha256 {actual}, but its folder's {recorded_in} records {expected}: the weights were"
                " changed or damaged after the folder was written. Write the folder again (sslzoo.save_pretrained,"
                " `sslzoo publish`, `sslzoo convert`) or fetch it again."
            )
        raise ChecksumError(
            f"{path} has sha256 {actual}, but {expected} is pinned for it. The file is corrupt, truncated or not the"
            " published one: delete it and download it again (`sslzoo download NAME`)."
        )
    return actual
