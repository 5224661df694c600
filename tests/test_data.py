"""Tests for tfpvae.data: loaders, normalisation, binarization and pipelines.

Real-data tests read ``../shared/data`` beside the checkout and are skipped
when it is absent; everything else uses small files written to ``tmp_path``
or tfds mock data, so the file runs in seconds and offline.
"""

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfpvae import data
from tfpvae.data import DatasetError, load_dataset, make_eval_dataset, make_train_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BINARIZED_NPZ = SHARED / "binarized_mnist.npz"
MNIST_IDX = SHARED / "mnist"

needs_binarized_npz = pytest.mark.skipif(
    not BINARIZED_NPZ.is_file(),
    reason=f"real data {BINARIZED_NPZ} is absent (shared data folder beside the checkout)")
needs_mnist_idx = pytest.mark.skipif(
    not (MNIST_IDX / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real data {MNIST_IDX} is absent (shared data folder beside the checkout)")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, header_shape=None) -> Path:
    """Writes a uint8 IDX file (gzip if the name ends in .gz)."""
    shape = array.shape if header_shape is None else header_shape
    blob = (bytes([0, 0, 0x08, len(shape)]) + np.array(shape, ">u4").tobytes()
            + array.astype(np.uint8).tobytes())
    if path.suffix == ".gz":
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


def raw_t10k():
    """The t10k images/labels parsed directly (standard MNIST offsets)."""
    with gzip.open(MNIST_IDX / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(MNIST_IDX / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255.0).astype(np.uint8)


def epoch(pipeline) -> np.ndarray:
    """Concatenates one iteration (= one epoch) of a pipeline."""
    return np.concatenate([b.numpy() for b in pipeline])


def index_dataset(n: int, kind: str = "tabular") -> data.Dataset:
    """A Dataset whose example i holds the value i (so batches reveal order)."""
    values = np.arange(n, dtype=np.float32)
    if kind == "tabular":
        x, shape = values[:, None], (1,)
    else:
        x, shape = (values / n)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32), (2, 2, 1)
    return data.Dataset(name="index", splits={"train": x, "valid": x[:5]},
                        labels={"train": None, "valid": None}, data_shape=shape,
                        kind=kind)


def image_dataset(x: np.ndarray) -> data.Dataset:
    return data.Dataset(name="synthetic", splits={"train": x, "valid": x[:10]},
                        labels={"train": None, "valid": None},
                        data_shape=x.shape[1:], kind="image")


@pytest.fixture(scope="module")
def t10k():
    return load_dataset(MNIST_IDX, seed=3)


# --------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------

@needs_binarized_npz
def test_binarized_mnist_npz_keeps_splits_and_values():
    ds = load_dataset(BINARIZED_NPZ)
    raw = np.load(BINARIZED_NPZ)
    assert set(ds.splits) == {"train", "valid"}
    assert ds.splits["train"].shape == (50000, 28, 28, 1)
    assert ds.splits["valid"].shape == (10000, 28, 28, 1)
    assert ds.splits["train"].dtype == np.float32
    assert ds.data_shape == (28, 28, 1) and ds.kind == "image"
    assert ds.eval_split == "valid" and ds.is_binary
    assert ds.labels == {"train": None, "valid": None}
    # The published valid split is used as is, not re-carved from train.
    np.testing.assert_array_equal(ds.splits["valid"][..., 0], raw["valid"])


@needs_mnist_idx
def test_idx_t10k_is_split_into_disjoint_train_valid(t10k):
    raw_images, _ = raw_t10k()
    assert set(t10k.splits) == {"train", "valid"}
    assert len(t10k.splits["train"]) == 9000 and len(t10k.splits["valid"]) == 1000
    assert t10k.data_shape == (28, 28, 1)
    x = t10k.splits["train"]
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # Scaled once by 255: values are exactly k/255, and truly grayscale.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
    assert not t10k.is_binary

    index = {img.tobytes(): i for i, img in enumerate(raw_images)}  # all distinct
    train = {index[img.tobytes()] for img in to_uint8(t10k.splits["train"][..., 0])}
    valid = {index[img.tobytes()] for img in to_uint8(t10k.splits["valid"][..., 0])}
    assert len(train) == 9000 and len(valid) == 1000
    assert not train & valid
    assert train | valid == set(range(10000))


@needs_mnist_idx
def test_idx_labels_stay_aligned_with_images(t10k):
    raw_images, raw_labels = raw_t10k()
    index = {img.tobytes(): i for i, img in enumerate(raw_images)}
    for split in ("train", "valid"):
        found = [index[img.tobytes()] for img in to_uint8(t10k.splits[split][..., 0])]
        np.testing.assert_array_equal(t10k.labels[split], raw_labels[found])
        assert t10k.labels[split].dtype == np.int64


@needs_mnist_idx
def test_carve_is_seeded(t10k):
    again = load_dataset(MNIST_IDX, seed=3)
    other = load_dataset(MNIST_IDX, seed=4)
    np.testing.assert_array_equal(again.splits["valid"], t10k.splits["valid"])
    assert not np.array_equal(other.labels["valid"], t10k.labels["valid"])


@needs_mnist_idx
def test_digits_filter_keeps_only_those_labels():
    _, raw_labels = raw_t10k()
    ds = load_dataset(MNIST_IDX, digits=[1, 8], seed=0)
    for split in ("train", "valid"):
        assert set(np.unique(ds.labels[split])) == {1, 8}
        assert len(ds.splits[split]) == len(ds.labels[split])
    total = len(ds.splits["train"]) + len(ds.splits["valid"])
    assert total == np.isin(raw_labels, [1, 8]).sum()


@needs_mnist_idx
def test_digits_filter_rejects_absent_digit():
    with pytest.raises(DatasetError, match="42"):
        load_dataset(MNIST_IDX, digits=[1, 42])


@needs_mnist_idx
def test_static_binarization_samples_the_intensities(t10k):
    ds = load_dataset(MNIST_IDX, seed=3, binarize="static")
    assert ds.is_binary and ds.binarize == "static"
    for split in ("train", "valid"):
        assert set(np.unique(ds.splits[split])) == {0.0, 1.0}
        assert abs(ds.splits[split].mean() - t10k.splits[split].mean()) < 0.003
        # Pixels that are 0 stay 0, pixels that are 1 stay 1.
        intensity = t10k.splits[split]
        assert np.all(ds.splits[split][intensity == 0] == 0)
        assert np.all(ds.splits[split][intensity == 1] == 1)
    again = load_dataset(MNIST_IDX, seed=3, binarize="static")
    np.testing.assert_array_equal(again.splits["train"], ds.splits["train"])


@needs_mnist_idx
def test_dynamic_binarization_keeps_train_and_fixes_valid(t10k):
    ds = load_dataset(MNIST_IDX, seed=3, binarize="dynamic")
    assert ds.binarize == "dynamic" and not ds.is_binary
    np.testing.assert_array_equal(ds.splits["train"], t10k.splits["train"])
    valid = ds.splits["valid"]
    assert set(np.unique(valid)) == {0.0, 1.0}
    assert abs(valid.mean() - t10k.splits["valid"].mean()) < 0.005
    again = load_dataset(MNIST_IDX, seed=3, binarize="dynamic")
    np.testing.assert_array_equal(again.splits["valid"], valid)


# --------------------------------------------------------------------------
# Local file formats
# --------------------------------------------------------------------------

def test_npz_keras_style_carves_valid_and_keeps_test(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(20, 6, 5), dtype=np.uint8)
    label_of = lambda x: x[:, 0, 0].astype(np.int64) % 7  # noqa: E731
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=x_train, y_train=label_of(x_train),
             x_test=x_test, y_test=label_of(x_test))

    ds = load_dataset(path, validation_fraction=0.2, seed=1)
    assert ds.name == str(path)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 40, "valid": 10, "test": 20}
    assert ds.data_shape == (6, 5, 1) and ds.kind == "image"
    np.testing.assert_array_equal(to_uint8(ds.splits["test"][..., 0]), x_test)
    np.testing.assert_array_equal(ds.labels["test"], label_of(x_test))
    carved = np.concatenate([ds.splits["train"], ds.splits["valid"]])[..., 0]
    assert sorted(r.tobytes() for r in to_uint8(carved)) == sorted(r.tobytes() for r in x_train)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds.labels[split],
                                      label_of(to_uint8(ds.splits[split][..., 0])))


def test_npz_validation_key_and_split_labels(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {s: rng.uniform(size=(n, 4, 4, 3)).astype(np.float32)
              for s, n in (("train", 30), ("validation", 8), ("test", 6))}
    labels = {f"{s}_labels": np.arange(len(a)) % 3 for s, a in arrays.items()}
    path = tmp_path / "rgb.npz"
    np.savez(path, **arrays, **labels)
    ds = load_dataset(path)
    assert list(ds.splits) == ["train", "valid", "test"]
    assert ds.data_shape == (4, 4, 3)
    # Data already in [0, 1] is kept as is.
    np.testing.assert_array_equal(ds.splits["valid"], arrays["validation"])
    np.testing.assert_array_equal(ds.labels["valid"], np.arange(8) % 3)


def test_npz_single_array_is_all_data(tmp_path):
    x = np.random.default_rng(2).integers(0, 2, size=(40, 5, 5)).astype(np.uint8)
    path = tmp_path / "anything.npz"
    np.savez(path, pixels=x)
    ds = load_dataset(path, validation_fraction=0.25, seed=0)
    assert len(ds.splits["train"]) == 30 and len(ds.splits["valid"]) == 10
    assert "test" not in ds.splits and ds.is_binary
    assert ds.labels["train"] is None


def test_tabular_npz_is_standardised_with_train_stats(tmp_path):
    rng = np.random.default_rng(3)
    loc, scale = np.array([5.0, -2.0, 0.0]), np.array([2.0, 1.0, 0.5])
    train = rng.normal(loc, scale, size=(200, 3))
    valid = rng.normal(loc, scale, size=(40, 3))
    path = tmp_path / "table.npz"
    np.savez(path, train=train, valid=valid, train_labels=np.arange(200) % 2,
             valid_labels=np.arange(40) % 2)

    ds = load_dataset(path)
    assert ds.kind == "tabular" and ds.data_shape == (3,)
    np.testing.assert_allclose(ds.splits["train"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.splits["train"].std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(ds.feature_mean, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.feature_std, train.std(0), rtol=1e-5)
    expected = (valid - train.mean(0)) / train.std(0)
    np.testing.assert_allclose(ds.splits["valid"], expected, rtol=1e-4, atol=1e-5)

    raw = load_dataset(path, standardize=False)
    np.testing.assert_allclose(raw.splits["train"], train, rtol=1e-6)
    assert raw.feature_mean is None and raw.feature_std is None

    with pytest.raises(DatasetError, match="tabular"):
        load_dataset(path, binarize="static")


def write_amat(path: Path, rows: np.ndarray) -> Path:
    np.savetxt(path, rows, fmt="%d")
    return path


def test_amat_folder_and_single_file(tmp_path):
    rng = np.random.default_rng(4)
    rows = {s: rng.integers(0, 2, size=(n, 784)) for s, n in
            (("train", 12), ("valid", 5), ("test", 4))}
    folder = tmp_path / "amat"
    folder.mkdir()
    for split, r in rows.items():
        write_amat(folder / f"binarized_mnist_{split}.amat", r)

    ds = load_dataset(folder)
    assert {k: v.shape for k, v in ds.splits.items()} == {
        "train": (12, 28, 28, 1), "valid": (5, 28, 28, 1), "test": (4, 28, 28, 1)}
    np.testing.assert_array_equal(ds.splits["test"].reshape(4, 784), rows["test"])
    assert ds.is_binary

    single = load_dataset(write_amat(tmp_path / "some.amat", rng.integers(0, 2, (20, 784))))
    assert len(single.splits["train"]) == 18 and len(single.splits["valid"]) == 2


def test_amat_ragged_lines_fail_with_path(tmp_path):
    path = tmp_path / "binarized_mnist_train.amat"
    path.write_text("0 1 0 1\n0 1\n")
    with pytest.raises(DatasetError, match="binarized_mnist_train.amat"):
        load_dataset(path)


def write_csv(path: Path, header, rows) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_csv_with_text_labels(tmp_path):
    rng = np.random.default_rng(5)
    names = np.array(["emu", "cat", "dog"])
    codes = rng.integers(0, 3, size=60)
    rows = [(10 * c + rng.uniform(), rng.normal(), names[c], rng.normal()) for c in codes]
    path = write_csv(tmp_path / "animals.csv", ["a", "b", "species", "c"], rows)

    ds = load_dataset(path, label_column="species", validation_fraction=0.2, seed=0)
    assert ds.kind == "tabular" and ds.data_shape == (3,)
    assert len(ds.splits["train"]) == 48 and len(ds.splits["valid"]) == 12
    assert ds.label_names == ["cat", "dog", "emu"]
    for split in ("train", "valid"):
        a = ds.splits[split][:, 0] * ds.feature_std[0] + ds.feature_mean[0]
        original = names[(a // 10).astype(int)]
        np.testing.assert_array_equal(np.array(ds.label_names)[ds.labels[split]], original)


def test_csv_numeric_labels_and_unlabelled(tmp_path):
    rows = [(i, i * 0.5, i % 4) for i in range(20)]
    path = write_csv(tmp_path / "t.csv", ["x", "y", "digit"], rows)
    ds = load_dataset(path, label_column="digit", standardize=False, seed=0)
    assert ds.label_names is None
    np.testing.assert_array_equal(ds.labels["train"], ds.splits["train"][:, 0].astype(int) % 4)
    plain = load_dataset(path)
    assert plain.data_shape == (3,) and plain.labels["train"] is None


def test_csv_errors_name_file_and_problem(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["x", "kind"], [(1, "a"), (2, "b")])
    with pytest.raises(DatasetError, match=r"t\.csv.*'nope'"):
        load_dataset(path, label_column="nope")
    with pytest.raises(DatasetError, match=r"t\.csv.*'kind' is not numeric"):
        load_dataset(path)


def test_idx_folder_with_train_and_test(tmp_path):
    rng = np.random.default_rng(6)
    train = rng.integers(0, 256, size=(30, 4, 5), dtype=np.uint8)
    test = rng.integers(0, 256, size=(10, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train[:, 0, 0] % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)  # plain, not gzip
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test[:, 0, 0] % 10)

    ds = load_dataset(tmp_path, seed=0)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 27, "valid": 3, "test": 10}
    assert ds.data_shape == (4, 5, 1)
    np.testing.assert_array_equal(to_uint8(ds.splits["test"][..., 0]), test)
    for split in ds.splits:
        np.testing.assert_array_equal(ds.labels[split],
                                      to_uint8(ds.splits[split][:, 0, 0, 0]) % 10)


def test_idx_with_wrong_shape_fails_with_path(tmp_path):
    images = np.zeros((5, 4, 4), np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, header_shape=(6, 4, 4))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*\(6, 4, 4\)"):
        load_dataset(tmp_path)

    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz.*5 labels"):
        load_dataset(tmp_path)


def test_sklearn_digits_offline():
    ds = load_dataset("sklearn_digits", seed=0)
    assert ds.name == "sklearn_digits" and ds.data_shape == (8, 8, 1)
    assert len(ds.splits["train"]) + len(ds.splits["valid"]) == 1797
    assert len(ds.splits["valid"]) == 180
    x = ds.splits["train"]
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-5)
    assert set(np.unique(ds.labels["train"])) == set(range(10))
    alias = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(alias.splits["valid"], ds.splits["valid"])


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------

def _corrupt(path):
    path.write_bytes(b"PK\x03\x04 definitely not a zip archive")


def _empty_npz(path):
    np.savez(path)


def _rank1_npz(path):
    np.savez(path, train=np.arange(10))


def _empty_file(path):
    path.write_bytes(b"")


def _txt(path):
    path.write_text("hello")


@pytest.mark.parametrize("name, make, problem", [
    ("corrupt.npz", _corrupt, "cannot read"),
    ("none.npz", _empty_npz, "no arrays"),
    ("rank1.npz", _rank1_npz, "shape"),
    ("empty.npz", _empty_file, "empty"),
    ("notes.txt", _txt, "unsupported"),
])
def test_bad_files_raise_with_path(tmp_path, name, make, problem):
    path = tmp_path / name
    make(path)
    with pytest.raises(DatasetError, match=problem) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_missing_path_and_unrecognised_folder(tmp_path):
    missing = tmp_path / "nothing_here.npz"
    with pytest.raises(DatasetError, match="no such file") as info:
        load_dataset(missing)
    assert str(missing) in str(info.value)
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match="neither MNIST IDX") as info:
        load_dataset(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_bad_options(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train=np.zeros((10, 3, 3), np.uint8))
    with pytest.raises(DatasetError, match="binarize"):
        load_dataset(path, binarize="sometimes")
    with pytest.raises(DatasetError, match="validation_fraction"):
        load_dataset(path, validation_fraction=1.0)
    with pytest.raises(DatasetError, match="needs labels"):
        load_dataset(path, digits=[1])
    with pytest.raises(DatasetError, match="label_column"):
        load_dataset(path, label_column="y")


# --------------------------------------------------------------------------
# Non-finite values: rejected right after reading, counted, split named
# --------------------------------------------------------------------------

def _one_line_error(source, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_nan_in_npz_images_names_count_and_split(tmp_path):
    rng = np.random.default_rng(10)
    train = rng.integers(0, 256, size=(30, 5, 5)).astype(np.float32)
    valid = rng.integers(0, 256, size=(8, 5, 5)).astype(np.float32)
    valid[2, 0, :3] = np.nan  # 3 NaN in example 2 ...
    valid[6, 4, 4] = np.nan   # ... and 1 in example 6.
    path = tmp_path / "images.npz"
    np.savez(path, train=train, valid=valid)

    message = _one_line_error(path)
    assert str(path) in message and "split 'valid'" in message
    assert "4 NaN values in 2 of 8 examples" in message
    assert "array rows 2, 6" in message
    assert "clean the file or drop those rows" in message
    assert "span" not in message  # not the old "image values span [nan, nan]"


def test_nan_and_inf_in_npy_all_data(tmp_path):
    x = np.random.default_rng(11).uniform(size=(20, 4, 4)).astype(np.float32)
    x[3, 1, 1] = np.nan
    x[3, 2, 2] = np.inf
    x[17, 0, 0] = -np.inf
    path = tmp_path / "all.npy"
    np.save(path, x)

    message = _one_line_error(path)
    # All data is the train split before valid is carved from it.
    assert "split 'train'" in message
    assert "1 NaN and 2 infinite values in 2 of 20 examples" in message
    assert "array rows 3, 17" in message and "drop those rows" in message


def test_inf_in_tabular_npz_split(tmp_path):
    train = np.random.default_rng(12).normal(size=(40, 3))
    test = np.random.default_rng(13).normal(size=(10, 3))
    test[9, 1] = np.inf
    path = tmp_path / "table.npz"
    np.savez(path, train=train, test=test)
    message = _one_line_error(path)
    assert "split 'test' holds 1 infinite value in 1 of 10 examples (array row 9)" in message
    assert "drop that row" in message


def test_csv_with_empty_and_nan_cells_names_lines_and_columns(tmp_path):
    # Before, an empty cell claimed the whole column was "not numeric".
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n4,,6\n\n7,8,9\n10,nan,NA\n13,14,15\n")
    message = _one_line_error(path)
    assert str(path) in message and "split 'train'" in message
    assert "3 NaN values (empty or NaN cells) in 2 of 5 examples" in message
    # Line numbers of the file (the blank line 4 counts), not array rows.
    assert "lines 3, 6" in message and "columns 'b', 'c'" in message
    assert "not numeric" not in message
    assert "clean the file or drop those lines" in message


def test_csv_with_empty_label_cell(tmp_path):
    # Before, the empty label silently became a class named "".
    path = tmp_path / "labels.csv"
    path.write_text("x,y\n1,2\n3,\n4,5\n6,2\n")
    message = _one_line_error(path, label_column="y")
    assert "split 'train' has 1 empty label in column 'y' (line 3)" in message


# --------------------------------------------------------------------------
# tensorflow_datasets
# --------------------------------------------------------------------------

def _forbid_probe(*args, **kwargs):
    raise AssertionError("the network must not be probed for a prepared dataset")


def test_tfds_mock_mnist_train_test_gets_valid_carved(tmp_path, monkeypatch):
    # Real-looking metadata (train and test splits only, like mnist) so the
    # builder counts as prepared.
    meta = tmp_path / "meta"
    builder = tfds.builder("mnist", data_dir=meta)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name="train", shard_lengths=[40], num_bytes=0),
        tfds.core.SplitInfo(name="test", shard_lengths=[40], num_bytes=0)]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    monkeypatch.setattr(data, "download_host_reachable", _forbid_probe)

    with tfds.testing.mock_data(num_examples=40, data_dir=str(meta),
                                policy=tfds.testing.MockPolicy.USE_FILES):
        ds = load_dataset("mnist", data_dir=str(tmp_path / "unused"), seed=0)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 36, "valid": 4, "test": 40}
    assert ds.data_shape == (28, 28, 1) and ds.kind == "image" and ds.eval_split == "valid"
    for split, x in ds.splits.items():
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert ds.labels[split].dtype == np.int64
        assert set(np.unique(ds.labels[split])) <= set(range(10))
    assert x.max() > 0.5  # uint8 pixels were scaled, not clipped
    assert ds.label_names == [str(d) for d in range(10)]


def test_tfds_mock_without_metadata_uses_conventional_splits(monkeypatch):
    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = load_dataset("mnist", digits=None)
    assert {k: v.shape for k, v in ds.splits.items()} == {
        s: (12, 28, 28, 1) for s in ("train", "valid", "test")}


def test_tfds_offline_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", data_dir=str(tmp_path / "fresh"))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "'mnist'" in message and "not cached" in message and "offline" in message
    assert str(tmp_path / "fresh") in message
    assert "sklearn_digits" in message and ".npz" in message
    assert "mnist_bundled" in message  # the offline MNIST, offered not substituted


def test_network_probe_respects_timeout():
    start = time.monotonic()
    assert isinstance(data.download_host_reachable(timeout=1.0), bool)
    assert time.monotonic() - start < 2.5


def test_unknown_tfds_name_is_one_line():
    with pytest.raises(DatasetError) as info:
        load_dataset("mnistt")
    message = str(info.value)
    assert "\n" not in message
    assert "local" in message and "did you mean mnist" in message


# --------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------

def test_train_epoch_visits_every_example_once():
    ds = index_dataset(103)
    full = epoch(make_train_dataset(ds, 10, seed=0, drop_remainder=False))
    assert full.dtype == np.float32 and full.shape == (103, 1)
    assert sorted(full[:, 0].astype(int)) == list(range(103))

    pipeline = make_train_dataset(ds, 10, seed=0)
    assert pipeline.element_spec.shape.as_list() == [10, 1]
    batches = [b.numpy() for b in pipeline]
    assert len(batches) == 10 and all(b.shape == (10, 1) for b in batches)
    seen = np.concatenate(batches)[:, 0]
    assert len(set(seen)) == 100


def test_train_pipeline_is_deterministic_and_reshuffles():
    ds = index_dataset(200)
    a = make_train_dataset(ds, 20, seed=7)
    b = make_train_dataset(ds, 20, seed=7)
    a1, a2 = epoch(a), epoch(a)
    b1, b2 = epoch(b), epoch(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    assert sorted(a1[:, 0]) == sorted(a2[:, 0])
    assert not np.array_equal(epoch(make_train_dataset(ds, 20, seed=8)), a1)
    resumed = make_train_dataset(ds, 20, seed=7, initial_epoch=1)
    np.testing.assert_array_equal(epoch(resumed), a2)


def test_dynamic_binarization_per_epoch():
    # Each example carries its index in ten exact 0/1 pixels (which Bernoulli
    # sampling preserves), so epochs can be aligned example by example.
    n, bits = 1000, 10
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(n, 8, 8, 1)).astype(np.float32)
    flat = x.reshape(n, 64)
    flat[:, :bits] = (np.arange(n)[:, None] >> np.arange(bits)) & 1
    ds = image_dataset(x)

    def by_example(batches):
        b = batches.reshape(len(batches), 64)
        index = (b[:, :bits].astype(int) << np.arange(bits)).sum(1)
        return b[np.argsort(index)]

    a = make_train_dataset(ds, 100, seed=1, binarize="dynamic")
    b = make_train_dataset(ds, 100, seed=1, binarize="dynamic")
    a1, a2, b1, b2 = epoch(a), epoch(a), epoch(b), epoch(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert set(np.unique(a1)) == {0.0, 1.0}
    e1, e2 = by_example(a1), by_example(a2)
    np.testing.assert_array_equal(e1[:, :bits], flat[:, :bits])  # every example once
    # The same example gets a fresh sample each epoch ...
    assert np.mean(e1[:, bits:] != e2[:, bits:]) > 0.2
    # ... of its own intensities.
    assert abs(e1[:, bits:].mean() - flat[:, bits:].mean()) < 0.01
    hits = (e1[:, bits:] + e2[:, bits:]) / 2
    assert np.corrcoef(hits.ravel(), flat[:, bits:].ravel())[0, 1] > 0.5
    other = by_example(epoch(make_train_dataset(ds, 100, seed=2, binarize="dynamic")))
    assert not np.array_equal(other, e1)


def test_dynamic_binarization_draws_fresh_noise_per_batch_and_epoch():
    # Identical examples: any repetition of the noise would show up directly.
    ds = image_dataset(np.full((40, 4, 4, 1), 0.5, np.float32))
    pipeline = make_train_dataset(ds, 10, seed=3, binarize="dynamic")
    epochs = [[b.numpy() for b in pipeline] for _ in range(2)]
    batches = [b for e in epochs for b in e]
    for i in range(len(batches)):
        for j in range(i):
            assert not np.array_equal(batches[i], batches[j])
    assert abs(np.mean(batches) - 0.5) < 0.03


def test_dynamic_binarization_odd_sizes_and_partial_batch():
    x = np.full((10, 3, 3, 1), 0.5, np.float32)
    x[:, 0, 0, 0], x[:, 2, 2, 0] = 0.0, 1.0
    batches = [b.numpy() for b in make_train_dataset(
        image_dataset(x), 3, seed=2, binarize="dynamic", drop_remainder=False)]
    assert [b.shape for b in batches] == [(3, 3, 3, 1)] * 3 + [(1, 3, 3, 1)]
    full = np.concatenate(batches)
    assert np.all(full[:, 0, 0] == 0) and np.all(full[:, 2, 2] == 1)
    assert 0.2 < full[:, 1].mean() < 0.8


def test_train_pipeline_rejects_misuse(tmp_path):
    x = np.random.default_rng(9).uniform(size=(30, 4, 4, 1)).astype(np.float32)
    with pytest.raises(DatasetError, match="static"):
        make_train_dataset(image_dataset(x), 10, seed=0, binarize="static")
    with pytest.raises(DatasetError, match="tabular"):
        make_train_dataset(index_dataset(30), 10, seed=0, binarize="dynamic")
    with pytest.raises(DatasetError, match="fewer than batch_size"):
        make_train_dataset(index_dataset(30), 64, seed=0)
    with pytest.raises(DatasetError, match="no split 'test'"):
        make_train_dataset(index_dataset(30), 10, seed=0, split="test")


def test_eval_pipeline_keeps_order_and_partial_batch():
    ds = index_dataset(23)
    ds.splits["valid"] = ds.splits["train"]
    batches = [b.numpy() for b in make_eval_dataset(ds, 10)]
    assert [len(b) for b in batches] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate(batches), ds.splits["valid"])
    np.testing.assert_array_equal(epoch(make_eval_dataset(ds, 10, split="train")),
                                  ds.splits["train"])
