"""TensorBoard event files next to ``log.csv``: the same rows, as scalars grouped by kind.

Optional: the ``tensorboard`` package (``pip install 'sslzoo[train]'``) enables it; without it training logs to
``log.csv`` only and says once how to turn the event files on. ``--set log.tensorboard=false`` turns them off.
A resumed run purges the events after its checkpoint's iteration, as ``log.csv`` drops those rows, so a curve has
one point per iteration.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

EVENTS_DIR = "tensorboard"
# column -> tag; the loss terms a method reports (loss, cls, query ...) go under loss/
_TAGS = {"lr": "optim/lr", "wd": "optim/weight_decay", "momentum": "optim/ema_momentum",
         "teacher_temp": "optim/teacher_temperature", "images_per_s": "speed/images_per_s",
         "knn_top1": "eval/knn_top1", "replaced_images": "data/replaced_images",
         "gpu_mem_gib": "speed/gpu_peak_memory_gib"}
_NOT_SCALARS = {"iteration", "step", "epoch", "elapsed_s"}


class TensorBoardLog:
    """Writes each log row as scalars at its iteration; does nothing when TensorBoard is not installed."""

    def __init__(self, run_dir: Path, *, start_iteration: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            _logger.info("TensorBoard event files are off: the tensorboard package is not installed (pip install "
                         "'sslzoo[train]'); log.csv has every row.")
            self.writer = None
            return
        # the rows up to the checkpoint's iteration stay; the next iteration's and later ones are written again
        self.writer = SummaryWriter(log_dir=str(run_dir / EVENTS_DIR),
                                    purge_step=start_iteration + 1 if start_iteration else None)

    def write(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key in _NOT_SCALARS or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            self.writer.add_scalar(_TAGS.get(key, f"loss/{key}"), value, global_step=int(row["iteration"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
