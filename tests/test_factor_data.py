"""Data with known factors of variation: sprites, tfds dsprites/shapes3d (mock)
and the ground-truth samplers of the disentanglement scores.

Every check of alignment has a known answer: a sprite is rendered again from
its factors (`tfpvae.sprites.render`), a tfds mock example is looked up in
the mock read directly, and a synthetic grid's images encode their factors.
"""

import math
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfpvae import data
from tfpvae import disentanglement
from tfpvae import sprites
from tfpvae.data import DatasetError, load_dataset

#: The factor features and sizes of the installed tfds builders (checked
#: against their DatasetInfo, without a download).
TFDS_GRIDS = {
    "dsprites": (("shape", "scale", "orientation", "x_position", "y_position"),
                 (3, 6, 40, 32, 32), (64, 64, 1)),
    "shapes3d": (("floor_hue", "wall_hue", "object_hue", "scale", "shape",
                  "orientation"), (10, 10, 10, 8, 4, 15), (64, 64, 3)),
}


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------
# Sprites
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sprites_ds():
    return load_dataset("sprites:600", seed=0)


def test_sprites_are_binary_images_with_aligned_integer_factors(sprites_ds):
    ds = sprites_ds
    assert ds.name == "sprites:600" and ds.kind == "image"
    assert ds.data_shape == (64, 64, 1) and ds.is_binary
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 540, "valid": 60}
    assert ds.labels == {"train": None, "valid": None}
    assert ds.has_factors and ds.factor_names == sprites.FACTOR_NAMES
    assert ds.factor_sizes == sprites.FACTOR_SIZES
    for split, x in ds.splits.items():
        factors = ds.factors[split]
        assert factors.dtype == np.int64 and factors.shape == (len(x), 5)
        # Each image is the rendering of its own factors: the carve kept
        # images and factors together.
        np.testing.assert_array_equal(x, sprites.render(factors))
    assert "factors shape,scale" in ds.summary()


def test_sprites_data_is_fixed_and_only_the_carve_follows_the_seed(sprites_ds):
    other = load_dataset("sprites:600", seed=1)

    def grid_indices(ds, split):
        return set(sprites.factors_to_index(ds.factors[split]).tolist())

    every = grid_indices(sprites_ds, "train") | grid_indices(sprites_ds, "valid")
    assert every == grid_indices(other, "train") | grid_indices(other, "valid")
    assert len(every) == 600  # Drawn without replacement.
    assert grid_indices(sprites_ds, "valid") != grid_indices(other, "valid")
    # The same images whatever the run's seed: SPRITES_SEED draws them.
    _, factors = sprites.load(600, seed=data.SPRITES_SEED)
    assert every == set(sprites.factors_to_index(factors).tolist())


def test_sprites_default_size_and_binarization():
    assert data.SPRITES_DEFAULT_EXAMPLES == 50_000
    ds = load_dataset("sprites:50", binarize="dynamic", validation_fraction=0.2)
    assert ds.binarize == "dynamic" and ds.is_binary  # Binary already.
    assert len(ds.splits["valid"]) == 10


@pytest.mark.parametrize("source", ["sprites:1", "sprites:x", "sprites:",
                                    f"sprites:{sprites.NUM_IMAGES + 1}"])
def test_bad_sprites_count_is_one_line(source):
    message = one_line_error(load_dataset, source)
    assert "sprites:N" in message and "737,280" in message


def test_sprites_sampler_renders_what_the_dataset_holds(sprites_ds):
    sampler = data.factor_sampler(sprites_ds)
    assert isinstance(sampler, sprites.SpritesSampler)
    factors = sprites_ds.factors["valid"]
    observed = sampler.sample_observations_from_factors(factors,
                                                        np.random.default_rng(0))
    np.testing.assert_array_equal(observed, sprites_ds.splits["valid"])


# --------------------------------------------------------------------------
# Sources without factors
# --------------------------------------------------------------------------

def test_sources_without_factors_have_none():
    ds = load_dataset("sklearn_digits", digits=[1, 8], seed=0)
    assert not ds.has_factors and ds.factor_names is None
    assert ds.factors == {split: None for split in ds.splits}
    # A Dataset built by hand has no factors by default.
    hand = data.Dataset(name="x", splits={"train": ds.splits["train"]},
                        labels={"train": None}, data_shape=ds.data_shape,
                        kind="image")
    assert hand.factors == {} and not hand.has_factors


def test_sampler_without_factors_is_one_line_naming_the_fix():
    message = one_line_error(data.factor_sampler, load_dataset("sklearn_digits"))
    assert "sklearn_digits has no factor labels" in message
    assert "--dataset=sprites" in message and "dsprites" in message
    assert "shapes3d" in message


# --------------------------------------------------------------------------
# tensorflow_datasets (mock data)
# --------------------------------------------------------------------------

@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """Serves a tfds dataset with `tfds.testing.mock_data` (random examples).

    As conftest's mock_mnist: the mock needs split sizes in the metadata
    (a train split only, like dsprites and shapes3d), and the network probe
    is told that a download would work (the mock makes it a no-op).
    """
    data_dir = str(tmp_path / "tfds")

    def serve(name: str, examples: int = 40):
        builder = tfds.builder(name, data_dir=data_dir)
        builder.info.set_splits(tfds.core.SplitDict([
            tfds.core.SplitInfo(name="train", shard_lengths=[examples],
                                num_bytes=0, filename_template=None)]))
        os.makedirs(builder.data_dir, exist_ok=True)
        builder.info.write_to_directory(builder.data_dir)
        return tfds.testing.mock_data(num_examples=examples, data_dir=data_dir)

    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: True)
    return serve, data_dir


def test_installed_tfds_builders_name_the_factor_features(tmp_path):
    for name, (names, sizes, shape) in TFDS_GRIDS.items():
        # The builder's metadata only: nothing is downloaded.
        features = tfds.builder(name, data_dir=str(tmp_path)).info.features
        keys = data.TFDS_FACTORS[name]
        assert tuple(k.removeprefix("label_") for k in keys) == names
        assert tuple(features[k].num_classes for k in keys) == sizes
        assert tuple(features["image"].shape) == shape


@pytest.mark.parametrize("name", sorted(TFDS_GRIDS))
def test_tfds_factors_are_integer_and_aligned(mock_tfds, name):
    serve, data_dir = mock_tfds
    names, sizes, shape = TFDS_GRIDS[name]
    with serve(name, examples=40):
        ds = load_dataset(name, data_dir=data_dir, seed=0)
        direct = list(tfds.as_numpy(tfds.builder(name, data_dir=data_dir)
                                    .as_dataset(split="train")))
    assert ds.data_shape == shape and ds.factor_names == names
    assert ds.factor_sizes == sizes and ds.has_factors
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 36, "valid": 4}
    # The mock's own (image, factors) pairs, by image.
    truth = {example["image"].tobytes():
             [int(example[k]) for k in data.TFDS_FACTORS[name]]
             for example in direct}
    assert len(truth) == 40
    for split, x in ds.splits.items():
        factors = ds.factors[split]
        assert factors.dtype == np.int64 and factors.shape == (len(x), len(sizes))
        assert ((factors >= 0) & (factors < np.array(sizes))).all()
        pixels = np.round(x * 255).astype(np.uint8)
        for image, row in zip(pixels, factors):
            assert truth[image.tobytes()] == row.tolist()


def test_tfds_subset_of_the_grid_has_no_sampler(mock_tfds):
    serve, data_dir = mock_tfds
    with serve("dsprites", examples=40):
        ds = load_dataset("dsprites", data_dir=data_dir, seed=0)
    message = one_line_error(data.factor_sampler, ds)
    assert "holds 40 of the 737,280 combinations" in message
    assert "subset of the grid" in message


def test_digit_filter_keeps_factors_aligned(mock_tfds, monkeypatch):
    # MNIST read with its label as a (one-factor) "factor": the filter must
    # keep every factor with its example, in every split.
    monkeypatch.setitem(data.TFDS_FACTORS, "mnist", ("label",))
    serve, data_dir = mock_tfds
    with serve("mnist", examples=200):
        ds = load_dataset("mnist", data_dir=data_dir, digits=[1, 8], seed=0)
    assert ds.factor_names == ("label",) and ds.factor_sizes == (10,)
    for split in ds.splits:
        assert set(np.unique(ds.labels[split])) <= {1, 8}
        np.testing.assert_array_equal(ds.factors[split][:, 0], ds.labels[split])


def test_mnist_keeps_its_behaviour_without_factors(mock_mnist, tmp_path):
    ds = load_dataset("mnist", data_dir=str(tmp_path / "tfds"), seed=0)
    assert not ds.has_factors and ds.factor_sizes is None
    assert all(ds.factors[split] is None for split in ds.splits)
    assert ds.labels["train"].dtype == np.int64


# --------------------------------------------------------------------------
# GridSampler
# --------------------------------------------------------------------------

SIZES = (2, 3, 4)


def grid_dataset(binarize="none", drop=0, seed=0) -> data.Dataset:
    """Every combination of SIZES once (but the last `drop`), shuffled into
    train/valid/test; image [2, 2, 1] of factors v holds (v + 1) / 8."""
    rng = np.random.default_rng(seed)
    factors = np.stack(np.unravel_index(rng.permutation(math.prod(SIZES)), SIZES), 1)
    factors = factors[:len(factors) - drop]
    images = np.zeros((len(factors), 2, 2, 1), np.float32)
    images.reshape(len(factors), 4)[:, :3] = (factors + 1) / 8.0
    bounds = {"train": slice(0, 14), "valid": slice(14, 19), "test": slice(19, None)}
    return data.Dataset(
        name="grid", splits={s: images[b] for s, b in bounds.items()},
        labels={s: None for s in bounds}, data_shape=(2, 2, 1), kind="image",
        binarize=binarize, factors={s: factors[b] for s, b in bounds.items()},
        factor_names=("a", "b", "c"), factor_sizes=SIZES)


def test_grid_sampler_looks_observations_up_by_factor():
    sampler = data.factor_sampler(grid_dataset())
    assert isinstance(sampler, data.GridSampler)
    assert sampler.num_factors == 3 and sampler.factor_sizes == SIZES
    rng = np.random.default_rng(1)
    factors = sampler.sample_factors(3000, rng)
    assert factors.dtype == np.int64 and factors.shape == (3000, 3)
    for k, size in enumerate(SIZES):  # Uniform over every value.
        counts = np.bincount(factors[:, k], minlength=size)
        assert len(counts) == size and counts.min() > 3000 / size * 0.8
    observed = sampler.sample_observations_from_factors(factors, rng)
    assert observed.dtype == np.float32 and observed.shape == (3000, 2, 2, 1)
    np.testing.assert_array_equal(observed.reshape(3000, 4)[:, :3] * 8 - 1, factors)
    assert not observed.reshape(3000, 4)[:, 3].any()


def test_grid_sampler_draws_bernoulli_observations_under_dynamic_binarization():
    sampler = data.GridSampler(grid_dataset(binarize="dynamic"))
    factors = np.array([[1, 2, 3]] * 4000)
    first = sampler.sample_observations_from_factors(factors, np.random.default_rng(5))
    again = sampler.sample_observations_from_factors(factors, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    assert set(np.unique(first)) == {0.0, 1.0}
    np.testing.assert_allclose(first.reshape(4000, 4).mean(0), [2 / 8, 3 / 8, 4 / 8, 0],
                               atol=0.03)


def test_grid_sampler_needs_the_whole_grid():
    message = one_line_error(data.GridSampler, grid_dataset(drop=1))
    assert message.startswith("grid: holds 23 of the 24 combinations")


def test_grid_sampler_serves_the_sampled_scores():
    # Codes = the encoded factors: a perfect code scores (nearly) 1.
    sampler = data.GridSampler(grid_dataset())

    def representation(x):
        return x.reshape(len(x), 4)[:, :3] * 8 - 1

    assert disentanglement.beta_vae_score(representation, sampler, batch_size=8,
                                          num_train=300, num_eval=100) >= 0.95
    assert disentanglement.factor_vae_score(representation, sampler, batch_size=8,
                                            num_train=300, num_eval=100,
                                            num_variance_estimate=300) >= 0.95
