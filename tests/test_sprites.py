"""The generated sprites: grid bookkeeping, determinism and the geometry of
each factor (translation, area, symmetry, staying inside the image)."""

import math
import time

import numpy as np
import pytest

from tfpvae import sprites

SQUARE, ELLIPSE, HEART = 0, 1, 2


def _one(shape=SQUARE, scale=5, orientation=0, x=15, y=15) -> np.ndarray:
    """The [64, 64] image of one factor combination."""
    return sprites.render([[shape, scale, orientation, x, y]])[0, :, :, 0]


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    """(column, row) centre of mass of a [64, 64] image."""
    rows, cols = np.nonzero(image)
    return np.array([cols.mean(), rows.mean()])


def test_grid_sizes_and_factor_values():
    assert sprites.FACTOR_NAMES == ("shape", "scale", "orientation",
                                    "position_x", "position_y")
    assert sprites.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert sprites.NUM_IMAGES == 737280 == math.prod(sprites.FACTOR_SIZES)
    first = np.zeros(5, np.int64)
    last = np.array(sprites.FACTOR_SIZES) - 1
    values = sprites.factor_values([first, last, [1, 2, 10, 5, 31]])
    np.testing.assert_allclose(values[0], [0, 0.5, 0, 0, 0])
    np.testing.assert_allclose(values[1], [2, 1.0, 2 * np.pi * 39 / 40, 1, 1])
    np.testing.assert_allclose(values[2], [1, 0.7, np.pi / 2, 5 / 31, 1])


def test_render_and_load_shapes_dtypes_and_values():
    images, factors = sprites.load(300, seed=1)
    assert images.shape == (300, 64, 64, 1) and images.dtype == np.uint8
    assert factors.shape == (300, 5) and np.issubdtype(factors.dtype, np.integer)
    assert set(np.unique(images)) == {0, 1}
    assert (images.sum(axis=(1, 2, 3)) > 50).all()  # Every sprite is drawn.
    np.testing.assert_array_equal(images, sprites.render(factors))


def test_load_is_a_seeded_sorted_subset_without_replacement():
    images, factors = sprites.load(200, seed=3)
    again_images, again_factors = sprites.load(200, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(factors, again_factors)
    flat = sprites.factors_to_index(factors)
    assert (np.diff(flat) > 0).all()  # Sorted, no repeats.
    other = sprites.factors_to_index(sprites.load(200, seed=4)[1])
    assert len(np.intersect1d(flat, other)) < 10  # A different subset.


def test_load_draws_without_replacement_up_to_the_whole_grid(monkeypatch):
    # 737,280 real images take 2.9 GB; count the factors only.
    monkeypatch.setattr(sprites, "render", lambda f: np.zeros([len(f), 1]))
    images, factors = sprites.load(10 ** 7, seed=0)
    assert len(images) == sprites.NUM_IMAGES
    np.testing.assert_array_equal(factors, sprites.all_factors())
    _, factors = sprites.load(700000, seed=0)  # Without replacement:
    assert len(np.unique(sprites.factors_to_index(factors))) == 700000


def test_flat_index_round_trip_in_c_order():
    grid = sprites.all_factors()
    assert grid.shape == (737280, 5)
    np.testing.assert_array_equal(grid[:2], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(grid[32], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(sprites.factors_to_index(grid),
                                  np.arange(737280))
    sample = sprites.sample_factors(1000, np.random.default_rng(0))
    np.testing.assert_array_equal(
        sprites.index_to_factors(sprites.factors_to_index(sample)), sample)


def test_sample_factors_cover_the_grid_uniformly():
    sample = sprites.sample_factors(20000, np.random.default_rng(0))
    for column, size in enumerate(sprites.FACTOR_SIZES):
        counts = np.bincount(sample[:, column], minlength=size)
        assert len(counts) == size
        np.testing.assert_allclose(counts / 20000, 1 / size, atol=0.2 / size)
    np.testing.assert_array_equal(sample, sprites.sample_factors(20000, 0))


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_position_translates_by_the_expected_number_of_pixels(shape):
    base = _one(shape, scale=3, orientation=7, x=4, y=20)
    moved = _one(shape, scale=3, orientation=7, x=29, y=2)
    # One position step is 1/31 of [0, 1] and one pixel.
    shift = (sprites.factor_values([[shape, 3, 7, 29, 2]])
             - sprites.factor_values([[shape, 3, 7, 4, 20]]))[0, 3:] * 31
    np.testing.assert_allclose(shift, [25, -18])
    np.testing.assert_allclose(_centre_of_mass(moved) - _centre_of_mass(base),
                               shift, atol=1e-9)
    assert moved.sum() == base.sum()  # The same sprite, moved.


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_area_grows_strictly_with_scale(shape):
    areas = [_one(shape, scale, orientation=3).sum() for scale in range(6)]
    assert (np.diff(areas) > 0).all(), areas
    # Area ~ scale^2: from 0.5 to 1 it roughly quadruples.
    assert 3.3 < areas[-1] / areas[0] < 4.5


@pytest.mark.parametrize("orientation", [0, 5])  # 0 and pi / 8.
def test_square_area_matches_the_analytic_area(orientation):
    for scale_index, scale in enumerate(sprites.SCALES):
        side = 21.0 * scale  # The side of the square at scale 1 is 21 pixels.
        area = _one(SQUARE, scale_index, orientation).sum()
        # Pixels whose centres are inside: within a pixel of the boundary.
        assert abs(area - side ** 2) <= 2 * side + 1, (scale, area, side ** 2)


def test_shapes_differ():
    images = [_one(shape) for shape in (SQUARE, ELLIPSE, HEART)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert (images[i] != images[j]).sum() > 50


def test_orientation_turns_the_sprite_and_the_square_repeats_every_quarter():
    square = [_one(SQUARE, orientation=o) for o in (0, 5, 10, 20)]  # 0, pi/8,
    assert (square[0] != square[1]).sum() > 30                     # pi/2, pi.
    assert (square[0] != square[2]).sum() <= 2  # The known symmetry.
    assert (square[0] != square[3]).sum() <= 2
    ellipse = [_one(ELLIPSE, orientation=o) for o in (0, 10, 20)]
    assert (ellipse[0] != ellipse[1]).sum() > 100   # Lying vs standing.
    assert (ellipse[0] != ellipse[2]).sum() <= 2


def test_heart_at_pi_is_the_vertical_flip_of_the_heart_at_zero():
    # Rows y and 31 - y are mirror images about the middle of the image.
    upright = _one(HEART, orientation=0, x=12, y=21)
    upside_down = _one(HEART, orientation=20, x=12, y=10)
    assert (upright != np.flipud(upright)).sum() > 30  # Not symmetric itself,
    assert (upside_down != np.flipud(upright)).sum() <= 2  # but flipped at pi.
    # The lobes (the bulk) are up at 0; turning by pi/2 counterclockwise
    # moves them to the left of the centre, pixel (31, 31).
    assert _centre_of_mass(_one(HEART, orientation=0))[1] < 30.5
    assert _centre_of_mass(_one(HEART, orientation=10))[0] < 30.5


def test_sprites_stay_inside_the_image_at_the_extremes():
    corners = [(x, y) for x in (0, 31) for y in (0, 31)]
    factors = np.array([[shape, 5, o, x, y] for shape in range(3)
                        for o in range(40) for x, y in corners])
    images = sprites.render(factors)[..., 0]
    centred = sprites.render(np.c_[factors[:, :3], np.full([len(factors), 2], 15)])[..., 0]
    np.testing.assert_array_equal(images.sum(axis=(1, 2)),
                                  centred.sum(axis=(1, 2)))  # Nothing clipped.
    border = np.ones([64, 64], bool)
    border[2:-2, 2:-2] = False
    assert not images[:, border].any()  # Two empty pixels on every side.


def test_render_is_fast_and_deterministic():
    factors = sprites.sample_factors(10000, np.random.default_rng(0))
    start = time.perf_counter()
    images = sprites.render(factors)
    assert time.perf_counter() - start < 3.0  # About 0.1 s on one core.
    np.testing.assert_array_equal(images[::97], sprites.render(factors[::97]))
    np.testing.assert_array_equal(images[:100],
                                  sprites.render(factors[:100], chunk_size=7))


def test_sampler_protocol():
    sampler = sprites.SpritesSampler()
    assert sampler.num_factors == 5
    assert tuple(sampler.factor_sizes) == sprites.FACTOR_SIZES
    rng = np.random.default_rng(0)
    factors = sampler.sample_factors(16, rng)
    x = sampler.sample_observations_from_factors(factors, rng)
    assert x.shape == (16, 64, 64, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, sprites.render(factors))


def test_factor_vae_score_of_hand_made_features_on_sprites():
    """Centre of mass and area identify position_x, position_y and scale."""
    from tfpvae import disentanglement  # pylint: disable=import-outside-toplevel

    def features(x):  # [n, 64, 64, 1] -> [n, 3]
        x = x[..., 0]
        area = x.sum(axis=(1, 2))
        grid = np.arange(64)
        return np.stack([(x.sum(1) * grid).sum(1) / area,
                         (x.sum(2) * grid).sum(1) / area, area], axis=1)

    score = disentanglement.factor_vae_score(
        features, sprites.SpritesSampler(), batch_size=16, num_train=100,
        num_eval=100, num_variance_estimate=500, seed=0)
    # Votes fixing shape or orientation are lost: 3 of 5 factors, plus luck.
    assert 0.5 < score < 0.8


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="position_x index out of range"):
        sprites.render([[0, 0, 0, 32, 0]])
    with pytest.raises(ValueError, match=r"shape \[N, 5\]"):
        sprites.render([0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="must be integers"):
        sprites.factor_values([[0.0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="Flat index out of range"):
        sprites.index_to_factors([737280])
    with pytest.raises(ValueError, match="rng must be a numpy Generator"):
        sprites.sample_factors(3, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="num_examples must be >= 1"):
        sprites.load(0)
