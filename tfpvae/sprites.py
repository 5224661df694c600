"""Sprites: binary 64x64 images generated from five known factors, offline.

A deterministic stand-in for dSprites [1]: every combination of

    shape        3 values: square, ellipse, heart
    scale        6 values, linearly from 0.5 to 1.0
    orientation  40 values, 2 pi k / 40 for k = 0..39 (radians)
    position_x   32 values, linearly from 0 to 1
    position_y   32 values, linearly from 0 to 1

is one image, 3 x 6 x 40 x 32 x 32 = 737,280 in all, enumerated in C order
of the factor indices (the last factor varies fastest). Disentanglement
models and metrics (`tfpvae.disentanglement`) can then run without a
download, against factors that are known exactly.

Rendering. Each shape is an analytic region in "unit" coordinates (u to the
right, v up, centred at the rotation centre): the square |u|, |v| <= 1, the
ellipse (u / sqrt 2)^2 + (v / (sqrt 2 / 2))^2 <= 1 and the heart
(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 (Taubin's heart curve) with x = c u and
y = c v + 0.118, c = 1.3366 / sqrt 2, which centres its bounding box. All
three fit in the disc of radius sqrt 2 about the centre. A pixel is 1 (on)
when its centre, rotated by -orientation about the sprite centre and divided
by 10.5 * scale pixels, falls inside the region: the square at scale 1 is
21 x 21 pixels and every sprite fits in a disc of radius 14.85 pixels.
Positions map to pixel centres: position index i puts the sprite centre on
the centre of pixel 16 + i, for columns (position_x) and rows (position_y,
growing downwards as array rows do), so one position step is a translation
by exactly one pixel and the sprite stays at least two pixels inside the
image at every position, scale and orientation. Orientation turns the sprite
counterclockwise as seen in the image.

As every centre is a pixel centre, an image is one of 720 masks of
33 x 33 pixels (shape x scale x orientation), computed once, pasted at its
position: rendering is vectorised and exactly translation equivariant.

Differences from DeepMind's dSprites [1]:

* dSprites' shapes are hand-drawn masks; ours are the analytic regions above
  (the heart is Taubin's curve, not their drawing).
* Orientation symmetry is not handled, as in dSprites: the square repeats
  every 10 orientation steps (pi / 2) and the ellipse every 20 (pi), so
  orientation is identifiable only modulo the shape's symmetry. dSprites'
  40 orientations are linspace(0, 2 pi, 40), whose first and last coincide;
  ours are 2 pi k / 40 and never repeat for the heart.
* No anti-aliasing: a pixel is on exactly when its centre is inside.
* Exact pixel placement, sprite sizes and the direction of position_y and of
  rotation may differ from dSprites.

#### References
[1] Matthey, L., Higgins, I., Hassabis, D. and Lerchner, A. dSprites:
    Disentanglement testing Sprites dataset. https://github.com/deepmind/
    dsprites-dataset/, 2017.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
IMAGE_SHAPE = (64, 64, 1)
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280

SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES[1])
ORIENTATIONS = 2.0 * np.pi * np.arange(FACTOR_SIZES[2]) / FACTOR_SIZES[2]
POSITIONS = np.linspace(0.0, 1.0, FACTOR_SIZES[3])

#: Pixels per unit coordinate at scale 1: the square's half-side.
_UNIT_PIXELS = 10.5
#: Offsets of the pasted window from the sprite centre: -16..16 pixels,
#: more than the sprite radius sqrt(2) * 10.5 = 14.85.
_WINDOW = np.arange(-16, 17)
#: Pixel of the sprite centre at position index 0.
_FIRST_CENTRE = 16
#: Taubin's heart: scale of the unit coordinates and shift of its
#: bounding-box centre; its radius about that centre is 1.3366.
_HEART_SCALE = 1.3366 / math.sqrt(2.0)
_HEART_SHIFT = 0.118


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u / math.sqrt(2.0)) ** 2 + (v / (math.sqrt(2.0) / 2.0)) ** 2 <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = _HEART_SCALE * u, _HEART_SCALE * v + _HEART_SHIFT
    return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0


#: Inside tests `(u, v) -> bool` in unit coordinates, in FACTOR order.
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "square": _square, "ellipse": _ellipse, "heart": _heart}


def _check_factors(indices) -> np.ndarray:
    """Returns `indices` as int64 [N, 5], or raises on a bad shape or range."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"Factor indices must have shape [N, {len(FACTOR_SIZES)}]"
                         f"; got {indices.shape}.")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"Factor indices must be integers; got dtype "
                         f"{indices.dtype} (use factors_to_index/all_factors).")
    bad = (indices < 0) | (indices >= np.asarray(FACTOR_SIZES))
    if bad.any():
        column = int(np.nonzero(bad.any(axis=0))[0][0])
        raise ValueError(f"Factor {FACTOR_NAMES[column]} index out of range: "
                         f"keep it in [0, {FACTOR_SIZES[column]}).")
    return indices.astype(np.int64)


def factor_values(indices) -> np.ndarray:
    """The physical values of factor indices.

    Args:
        indices: Integer factor indices `[N, 5]`, in `FACTOR_NAMES` order.

    Returns:
        float64 `[N, 5]`: the shape index (0 square, 1 ellipse, 2 heart) as
        a float, the scale in [0.5, 1], the orientation in radians in
        [0, 2 pi) and the x and y positions in [0, 1].
    """
    indices = _check_factors(indices)
    return np.stack([indices[:, 0].astype(np.float64), SCALES[indices[:, 1]],
                     ORIENTATIONS[indices[:, 2]], POSITIONS[indices[:, 3]],
                     POSITIONS[indices[:, 4]]], axis=1)


@functools.lru_cache(maxsize=1)
def _masks() -> np.ndarray:
    """All sprites centred on a pixel: uint8 [3, 6, 40, 33, 33] (read-only)."""
    dx = _WINDOW[None, :].astype(np.float64)    # Columns, to the right.
    dy = -_WINDOW[:, None].astype(np.float64)   # Rows, upwards.
    cos = np.cos(ORIENTATIONS)[:, None, None]   # [40, 1, 1]
    sin = np.sin(ORIENTATIONS)[:, None, None]
    u_rotated = cos * dx + sin * dy             # Rotated by -orientation.
    v_rotated = -sin * dx + cos * dy            # [40, 33, 33]
    pixels = (_UNIT_PIXELS * SCALES)[:, None, None, None]  # [6, 1, 1, 1]
    masks = np.stack([inside(u_rotated / pixels, v_rotated / pixels)
                      for inside in SHAPES.values()]).astype(np.uint8)
    masks.setflags(write=False)
    return masks  # [3, 6, 40, 33, 33]


def render(indices, *, chunk_size: int = 8192) -> np.ndarray:
    """Draws the sprites of the given factor indices.

    Args:
        indices: Integer factor indices `[N, 5]`, in `FACTOR_NAMES` order.
        chunk_size: Images pasted per vectorised step (bounds the memory of
            the index arrays; the result does not depend on it).

    Returns:
        uint8 `[N, 64, 64, 1]` with values in {0, 1}; the same indices always
        give the same images.
    """
    indices = _check_factors(indices)
    masks = _masks()
    images = np.zeros((len(indices), *IMAGE_SHAPE[:2]), np.uint8)
    window_rows = _WINDOW[None, :, None] + _FIRST_CENTRE
    window_cols = _WINDOW[None, None, :] + _FIRST_CENTRE
    for start in range(0, len(indices), chunk_size):
        block = indices[start:start + chunk_size]
        rows = block[:, 4, None, None] + window_rows  # [n, 33, 1]
        cols = block[:, 3, None, None] + window_cols  # [n, 1, 33]
        image = np.arange(start, start + len(block))[:, None, None]
        images[image, rows, cols] = masks[block[:, 0], block[:, 1], block[:, 2]]
    return images[..., None]


def _generator(rng) -> np.random.Generator:
    """A numpy Generator from a Generator or an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator or an int seed; got "
                     f"{type(rng).__name__} (use np.random.default_rng(seed)).")


def sample_factors(n: int, rng) -> np.ndarray:
    """Factor indices drawn uniformly over the grid, with replacement.

    Args:
        n: Number of draws.
        rng: A `np.random.Generator` (or an int seed).

    Returns:
        int64 `[n, 5]`.
    """
    rng = _generator(rng)
    return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES],
                    axis=1).astype(np.int64)


def all_factors() -> np.ndarray:
    """Every factor combination in C order: int64 [737280, 5]."""
    return index_to_factors(np.arange(NUM_IMAGES))


def index_to_factors(flat_index) -> np.ndarray:
    """Factor indices `[N, 5]` of flat grid indices `[N]` (C order)."""
    flat_index = np.asarray(flat_index)
    if ((flat_index < 0) | (flat_index >= NUM_IMAGES)).any():
        raise ValueError(f"Flat index out of range: keep it in [0, {NUM_IMAGES}).")
    return np.stack(np.unravel_index(flat_index, FACTOR_SIZES),
                    axis=-1).astype(np.int64)


def factors_to_index(indices) -> np.ndarray:
    """Flat grid indices `[N]` (C order) of factor indices `[N, 5]`."""
    indices = _check_factors(indices)
    return np.ravel_multi_index(tuple(indices.T), FACTOR_SIZES).astype(np.int64)


def load(num_examples: int = NUM_IMAGES, seed: int = 0
         ) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random subset of the grid, without replacement.

    Args:
        num_examples: Number of images; the full grid (737,280 images,
            2.9 GB) when it is at least `NUM_IMAGES`.
        seed: Seed of the subset; the same seed gives the same subset.

    Returns:
        `(images, factors)`: uint8 `[n, 64, 64, 1]` in {0, 1} and int64
        factor indices `[n, 5]`, sorted by flat grid index.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1; got {num_examples}.")
    if num_examples >= NUM_IMAGES:
        flat = np.arange(NUM_IMAGES)
    else:
        rng = np.random.default_rng(seed)
        flat = np.sort(rng.choice(NUM_IMAGES, num_examples, replace=False))
    factors = index_to_factors(flat)
    return render(factors), factors


class SpritesSampler:
    """The sprites as ground-truth data for `tfpvae.disentanglement`.

    Attributes:
        num_factors: 5.
        factor_sizes: `FACTOR_SIZES`.
    """
    num_factors = len(FACTOR_SIZES)
    factor_sizes = FACTOR_SIZES

    def sample_factors(self, n: int, rng) -> np.ndarray:
        """Factor indices `[n, 5]`, uniform over the grid."""
        return sample_factors(n, rng)

    def sample_observations_from_factors(self, factors, rng) -> np.ndarray:
        """Images of `factors` `[n, 5]`: float32 `[n, 64, 64, 1]` in {0, 1}.

        The images are deterministic; `rng` is unused (the protocol allows
        noisy observations).
        """
        del rng
        return render(factors).astype(np.float32)
