"""Full training checkpoints: written atomically, found again by ``--resume auto``.

A checkpoint is one ``torch.save`` dict (``checkpoint.pt`` in the run folder) holding the method module (framework,
heads, momentum encoder or teacher, DINO centres), the optimizer and AMP scaler, the position (iteration, epoch),
the ContrastiveCrop boxes and every RNG state (torch CPU and CUDA, Python's ``random``; the views' numbers are
functions of (seed, epoch, sample) and numpy draws nothing). It is written to a temporary file in the same folder,
fsynced, then renamed over the previous one, so a killed run always leaves the last complete checkpoint; ``--keep N``
also keeps the last N as ``checkpoint-<iteration>.pt``. It is read
with ``weights_only=True``: it holds tensors and plain containers only.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from sslzoo.errors import CheckpointFormatError
from sslzoo.files import save_torch_atomic

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


def rng_state() -> dict[str, Any]:
    """Every RNG state the loop depends on."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    state["python_version"], state["python_gauss"] = random.getstate()[0], random.getstate()[2]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states. RNG states must be CPU byte tensors, wherever ``torch.load`` mapped them (a
    checkpoint loaded onto a GPU brings them there); a run resumed on fewer GPUs than saved it restores those it has."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    return save_torch_atomic(dict(state, format=FORMAT), path)


def save_run_checkpoint(run_dir: str | Path, state: dict[str, Any], *, iteration: int, keep: int = 1) -> Path:
    """The run folder's ``checkpoint.pt`` (atomically replaced), and with ``keep`` > 1 the last ``keep`` checkpoints
    as ``checkpoint-<iteration>.pt`` too (``checkpoint.pt`` is then a hard link to the newest: no second copy)."""
    run_dir = Path(run_dir)
    latest = run_dir / CHECKPOINT_NAME
    if keep <= 1:
        return save_checkpoint(latest, state)
    numbered = save_checkpoint(run_dir / f"checkpoint-{iteration:08d}.pt", state)
    link = run_dir / f".{CHECKPOINT_NAME}.link"
    link.unlink(missing_ok=True)
    try:
        os.link(numbered, link)
    except OSError:  # a file system without hard links: a copy
        shutil.copyfile(numbered, link)
    os.replace(link, latest)
    for old in sorted(run_dir.glob("checkpoint-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return latest


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign files
        raise CheckpointFormatError(f"cannot read the training checkpoint {path}: {e}. Delete it to start afresh, "
                                    "or pass another run folder.") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointFormatError(f"{path} is not an sslzoo training checkpoint (format {FORMAT}).")
    return state


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint of a run folder, if one was written."""
    path = Path(run_dir) / CHECKPOINT_NAME
    return path if path.is_file() else None
