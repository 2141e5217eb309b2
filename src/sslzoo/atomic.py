"""Files written atomically: a temporary file beside the target, fsynced and renamed over it, with the permissions of
any new file. Torch-free, so that the command line's light paths (pins, listings) can write safely too.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _new_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; it is put back at once
    os.umask(umask)
    return 0o666 & ~umask


def _commit(tmp: Path, path: Path) -> None:
    # mkstemp makes the file private (0600), and writers such as safetensors replace the temporary file with one of
    # their own; the result gets the permissions of any new file, after the writer is done
    os.chmod(tmp, _new_file_mode())
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed over it when the block succeeds and removed whatever happens."""
    tmp = _atomic_target(path)
    try:
        yield tmp
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Union[str, os.PathLike], text: str) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
