"""Tiling images into one picture (TensorBoard summaries and the figures)."""

from __future__ import annotations

import numpy as np


def image_grid(images: np.ndarray, columns: int = 8, *, pad: int = 0,
               pad_value: float = 0.0) -> np.ndarray:
    """Tiles images row by row into one picture.

    Args:
        images: `[N, H, W, C]`.
        columns: Images per row.
        pad: Pixels between neighbouring images.
        pad_value: Value of the padding and of empty cells.

    Returns:
        `[rows * (H + pad) - pad, columns * (W + pad) - pad, C]`, with
        rows = ceil(N / columns).
    """
    images = np.asarray(images, np.float32)
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    step_h, step_w = height + pad, width + pad
    grid = np.full((rows * step_h - pad, columns * step_w - pad, channels),
                   pad_value, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * step_h:r * step_h + height, c * step_w:c * step_w + width] = image
    return grid
