"""A picture of dense predictions: val images with their ground truth and the prediction side by side, a legend below.

Colours come from Pascal VOC's fixed palette (class i always has the same colour, whatever the data; 255 = ignore is
VOC's cream), so pictures of two models on one dataset compare at a glance. The legend names the classes that appear
in the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..atomic import atomic_file
from ..data.segmentation import SegmentationDataset

PANEL = 192  # pixels, the height of each panel
_TEXT = 14
_MARGIN = 6


def palette(n: int = 256) -> np.ndarray:
    """Pascal VOC's colour map: ``uint8 (n, 3)``, class bits spread over the high bits of r, g and b."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - j)
            c >>= 3
        out[i] = rgb
    return out


def _panel(array: np.ndarray, width: int, nearest: bool) -> Image.Image:
    return Image.fromarray(array).resize((width, PANEL), Image.NEAREST if nearest else Image.BILINEAR)


def save_dense_picture(dataset: SegmentationDataset, predictions: Sequence[torch.Tensor],
                       path: Union[str, Path], *, title: str = "") -> Path:
    """Write one row per prediction (the first val images in order): image | ground truth | prediction."""
    colours = palette()
    rows, present = [], set()
    for i, pred in enumerate(predictions):
        image, _ = dataset[i]
        truth = dataset.mask(i).numpy()
        h, w = truth.shape
        width = max(1, round(PANEL * w / h))
        pred_np = pred.numpy().astype(np.uint8)
        present |= set(np.unique(truth).tolist()) | set(np.unique(pred_np).tolist())
        rows.append([_panel(image.permute(1, 2, 0).numpy(), width, False), _panel(colours[truth], width, True),
                     _panel(colours[pred_np], width, True)])
    named = [c for c in sorted(present) if c < dataset.num_classes]
    row_width = max((sum(p.width for p in r) + 2 * _MARGIN for r in rows), default=3 * PANEL)
    head = 2 * (_TEXT + _MARGIN)
    legend_rows = -(-len(named) // max(1, row_width // 150))
    height = head + len(rows) * (PANEL + _MARGIN) + legend_rows * (_TEXT + _MARGIN) + _MARGIN
    sheet = Image.new("RGB", (row_width + 2 * _MARGIN, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_MARGIN, _MARGIN), title, fill="black")
    y = head
    for r in rows:
        x = _MARGIN
        for label, panel in zip(("image", "ground truth", "prediction"), r):
            if y == head:
                draw.text((x, head - _TEXT - 2), label, fill="black")
            sheet.paste(panel, (x, y))
            x += panel.width + _MARGIN
        y += PANEL + _MARGIN
    per_row = max(1, row_width // 150)
    for n, c in enumerate(named):
        x, yy = _MARGIN + (n % per_row) * 150, y + (n // per_row) * (_TEXT + _MARGIN)
        draw.rectangle([x, yy, x + _TEXT, yy + _TEXT], fill=tuple(int(v) for v in colours[c]), outline="black")
        draw.text((x + _TEXT + 4, yy + 1), f"{c} {dataset.classes[c]}"[:22], fill="black")
    path = Path(path)
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
