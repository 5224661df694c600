"""Datasets for tfpvae: loading, normalising and batching.

`load_dataset` turns a *source* string into an in-memory `Dataset` of float32
arrays with normalised splits ``train``, ``valid`` (and ``test`` when the
source has one besides a validation split). A source is one of:

* a local ``.npz`` file: arrays ``train``, ``valid``/``validation``, ``test``
  (or keras style ``x_train``/``x_test``), labels as ``<split>_labels`` or
  ``y_<split>``; a file holding a single data array (any key, optionally with
  ``labels``/``y``) is "all data" and gets split. Arrays ``[N, H, W]`` are
  grayscale images, ``[N, H, W, C]`` images and ``[N, D]`` feature vectors
  (tabular, even when D is 784: reshape flattened images before saving);
* a local ``.npy`` file holding one array (all data, no labels);
* a folder of MNIST-style IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``), parsed here with numpy;
* the published binarized-MNIST ``.amat`` text files: a folder holding
  ``binarized_mnist_{train,valid,test}.amat`` or a single ``.amat`` file;
* a ``.csv`` table of feature vectors with a header row (``label_column``
  names the column kept as labels);
* ``sklearn_digits`` (alias ``digits``): scikit-learn's bundled 8x8 digits,
  always available offline;
* ``mnist_bundled``: the 10,000 labelled MNIST *test* images (28x28
  grayscale) shipped inside tfpvae as package data (gzip IDX files, read with
  `importlib.resources`, sha256-checked on every load), always available
  offline. It has no validation split, so ``valid`` is carved from it; for
  the full 70,000-image MNIST use ``mnist`` (tfds);
* ``sprites`` (or ``sprites:N``): binary 64x64x1 images generated offline
  by `tfpvae.sprites` from five known factors (shape, scale, orientation,
  position_x, position_y), N of them (default `SPRITES_DEFAULT_EXAMPLES`,
  50,000, of the 737,280 combinations) drawn without replacement, in a
  random order, with the fixed seed `SPRITES_SEED`, independent of
  ``seed``: every run sees the same images, and only the train/valid carve
  follows ``seed``. A stand-in for DeepMind's dSprites, not a copy of it:
  its shapes are analytic regions (the heart is Taubin's curve, not the
  hand-drawn mask), without anti-aliasing, with 2 pi k / 40 orientations
  that never repeat for the heart, and possibly other pixel placements and
  directions; see tfpvae/sprites.py for the exact rendering and
  differences. In memory the images take 16 KB each (float32), 800 MB
  for the default 50,000;
* ``dsprites`` and ``shapes3d``: the `tensorflow_datasets` datasets (a
  download when online), read with their factor labels (`TFDS_FACTORS`).
  Both are complete factor grids, held in memory in full as float32:
  737,280 images, 12 GB, and 480,000 color images, 24 GB;
* anything else is a `tensorflow_datasets` name (``mnist``, ``fashion_mnist``,
  ``binarized_mnist``, ``cifar10``, ``emnist/letters``, ...).

An existing local path takes precedence over a tfds name spelled the same way.

Normalisation rules:

* Data holding NaN or infinite values is rejected right after reading, with
  how many and in which split (and, for a ``.csv``, on which lines; empty
  cells count as NaN).
* Split names become ``train``/``valid``/``test`` (``validation`` -> ``valid``).
  Without a validation split, ``valid`` is carved out of ``train`` with a
  permutation fixed by ``seed`` (``validation_fraction`` of it); ``test`` is
  never touched. Data that comes as one block ("all data") is the train split
  before carving. ``Dataset.eval_split`` is always ``"valid"``.
* Images become float32 in [0, 1]: integer (or float) pixels up to 255 are
  divided by 255 once; data already in [0, 1] is kept as is.
* Tabular data is standardised with the train split's mean and standard
  deviation (stored in the `Dataset`) unless ``standardize=False``.
* ``digits`` keeps only the listed labels, in every split.
* Factors of variation (sprites, dsprites, shapes3d) are kept as integer
  indices ``[N, num_factors]`` per split (`Dataset.factors`), aligned with
  the examples through the valid carve and the ``digits`` filter, with
  their names and numbers of values (`Dataset.factor_names`,
  `Dataset.factor_sizes`). `factor_sampler` gives the ground truth that the
  sampled disentanglement scores (`tfpvae.disentanglement`) draw from: the
  sprites renderer, or a `GridSampler` that looks images up by their
  factors in a dataset holding the complete factor grid (dsprites,
  shapes3d loaded in full).
* ``binarize="static"`` replaces every split once by a Bernoulli sample of
  its pixel intensities. ``binarize="dynamic"`` keeps intensities in the
  train split and `make_train_dataset` draws a fresh sample of each batch
  every epoch; the ``valid`` and ``test`` splits are binarized once so that
  evaluation numbers are comparable between runs. Both one-off samples use
  the fixed seed `BINARIZATION_SEED` (independent of ``seed``), so a given
  source always binarizes to the same data.

A tfds dataset that is not prepared in the tfds data dir is downloaded, but
only after a quick network probe: offline, `load_dataset` raises
`DatasetError` within seconds instead of letting tfds retry for minutes.
`resolve_default_source` uses the same probe to pick the trainer's default
dataset: ``mnist`` (tfds) when it is prepared or can be downloaded, else
``mnist_bundled``.

`make_train_dataset` and `make_eval_dataset` build `tf.data` pipelines that
keep the split in memory as one tensor and gather whole batches, which is
much faster than slicing and shuffling example by example.

Example:
    ds = load_dataset("sklearn_digits", binarize="dynamic", seed=0)
    train = make_train_dataset(ds, 100, seed=0, binarize="dynamic")
    for epoch in range(10):
        for x in train:          # one epoch per iteration, reshuffled
            ...
    batches = iter(train.repeat())   # or every epoch from one iterator, as
                                     # the trainer does (an iterator freed
                                     # mid-epoch can cost seconds)
    for x in make_eval_dataset(ds, 500):
        ...
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import gzip
import hashlib
import importlib.resources
import math
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from absl import logging

from tfpvae import sprites as sprites_lib

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BINARIZE_CHOICES = ("none", "static", "dynamic")

#: Seed of the one-off Bernoulli samples (static binarization, and the eval
#: splits under dynamic binarization). Fixed so results stay comparable.
BINARIZATION_SEED = 20240611

#: Source names that mean scikit-learn's bundled 8x8 digits.
SKLEARN_DIGITS_ALIASES = ("sklearn_digits", "digits")

#: Source name of the MNIST test set shipped inside tfpvae (package data).
MNIST_BUNDLED = "mnist_bundled"

#: Source name of the generated sprites (`tfpvae.sprites`); ``sprites:N``
#: asks for N examples.
SPRITES = "sprites"

#: Examples of ``sprites`` without ``:N`` (of the 737,280 combinations).
SPRITES_DEFAULT_EXAMPLES = 50_000

#: Seed of the sprites drawn for ``sprites[:N]``. Fixed, independent of the
#: run's seed, so that every run sees the same images.
SPRITES_SEED = 20240612

#: tfds datasets read with their factors of variation: name -> the integer
#: (ClassLabel) features holding the factor indices, in factor order.
TFDS_FACTORS = {
    "dsprites": ("label_shape", "label_scale", "label_orientation",
                 "label_x_position", "label_y_position"),
    "shapes3d": ("label_floor_hue", "label_wall_hue", "label_object_hue",
                 "label_scale", "label_shape", "label_orientation"),
}

#: How to get data with factor labels, for the errors that need them.
FACTOR_SOURCES_HINT = ("--dataset=sprites (generated offline), --dataset=dsprites "
                       "or --dataset=shapes3d (tensorflow_datasets)")

#: Host:port probed before tfds is allowed to download (tfds and most of its
#: datasets are served from Google Cloud Storage).
DOWNLOAD_PROBE_HOST = ("storage.googleapis.com", 443)

#: Seconds the network probe may take (DNS included) before we call it offline.
DOWNLOAD_PROBE_TIMEOUT = 5.0

_SPLIT_ORDER = ("train", "valid", "test")
_SPLIT_ALIASES = (("train", "train"), ("valid", "valid"),
                  ("validation", "valid"), ("test", "test"))
_LABEL_ONLY_KEYS = ("labels", "label", "y", "targets")
_IDX_NAME = re.compile(
    r"^(?P<prefix>train|t10k)-(?P<what>images|labels)[-.]idx(?P<rank>\d)-ubyte(?:\.gz)?$")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}
_AMAT_NAME = re.compile(r"^binarized_mnist_(?P<split>train|valid|test)\.amat$")
_SPRITES_NAME = re.compile(rf"^{SPRITES}(?::(?P<count>.*))?$")
_LOCAL_SUFFIXES = (".npz", ".npy", ".csv", ".amat", ".gz")
_LOCAL_HINT = ("a local .npz/.npy/.csv/.amat file, a folder of MNIST IDX files, "
               "'mnist_bundled' or 'sklearn_digits'")
#: The bundled MNIST files (in tfpvae/data_files/mnist) and their sha256.
_BUNDLED_MNIST_IMAGES = ("t10k-images-idx3-ubyte.gz",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6")
_BUNDLED_MNIST_LABELS = ("t10k-labels-idx1-ubyte.gz",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")
#: The tfds dataset that `resolve_default_source` prefers to the bundled copy.
_DEFAULT_TFDS_NAME = "mnist"
#: Cells of a .csv read as missing values (NaN), compared lower-cased.
_CSV_MISSING = ("", "na", "n/a", "#n/a", "<na>", "null", "none")
_DYNAMIC_SEED_SALT = 0x9E3779B9
_TFDS_CHUNK = 10_000
_BERNOULLI_LEVELS = 65536


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message names the problem and the fix."""


@dataclasses.dataclass
class Dataset:
    """An in-memory dataset with normalised splits.

    Attributes:
        name: The source it was loaded from (tfds name, path,
            ``"sklearn_digits"`` or ``"mnist_bundled"``).
        splits: float32 arrays ``[N, *data_shape]`` per split; always has
            ``"train"`` and ``"valid"``, plus ``"test"`` when the source has
            a test split besides a validation split.
        labels: int64 label vector per split (aligned with `splits`), or None
            where the source has no labels.
        data_shape: Per-example shape, e.g. ``(28, 28, 1)`` or ``(18,)``.
        kind: ``"image"`` or ``"tabular"``.
        eval_split: The split used for held-out evaluation (``"valid"``).
        feature_mean: Per-feature train mean used to standardise tabular
            data, else None.
        feature_std: Per-feature train standard deviation used to standardise
            tabular data (constant features get 1), else None.
        binarize: The ``binarize`` mode the data was loaded with.
        label_names: Class names indexed by label when the source provides
            them (tfds class labels, text labels of a csv), else None.
        factors: int64 factor indices ``[N, num_factors]`` per split
            (aligned with `splits`), or None where the source has no
            factors of variation (the default: no factors).
        factor_names: The factors' names, e.g. ``("shape", "scale", ...)``,
            or None.
        factor_sizes: The number of values of each factor (indices of
            factor k lie in ``[0, factor_sizes[k])``), or None.
    """

    name: str
    splits: dict[str, np.ndarray] = dataclasses.field(repr=False)
    labels: dict[str, np.ndarray | None] = dataclasses.field(repr=False)
    data_shape: tuple[int, ...]
    kind: str
    eval_split: str = "valid"
    feature_mean: np.ndarray | None = dataclasses.field(default=None, repr=False)
    feature_std: np.ndarray | None = dataclasses.field(default=None, repr=False)
    binarize: str = "none"
    label_names: list[str] | None = dataclasses.field(default=None, repr=False)
    factors: dict[str, np.ndarray | None] = dataclasses.field(default_factory=dict,
                                                              repr=False)
    factor_names: tuple[str, ...] | None = None
    factor_sizes: tuple[int, ...] | None = None

    @property
    def has_factors(self) -> bool:
        """Whether every split comes with its factors of variation."""
        return self.factor_sizes is not None and all(
            self.factors.get(split) is not None for split in self.splits)

    @property
    def is_binary(self) -> bool:
        """Whether every value of every split is 0 or 1."""
        return all(_is_binary(x) for x in self.splits.values())

    def summary(self) -> str:
        """Returns a one-line description, e.g. for logging."""
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        labelled = "labelled" if self.labels.get("train") is not None else "unlabelled"
        if self.has_factors:
            labelled += f", factors {','.join(self.factor_names)}"
        return (f"{self.name}: {self.kind} {self.data_shape}, {sizes}, {labelled}, "
                f"binarize={self.binarize}, eval_split={self.eval_split}")


@dataclasses.dataclass
class _Raw:
    """Arrays as read from a source, before normalisation."""

    name: str
    splits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray | None]
    label_names: list[str] | None = None
    factors: dict[str, np.ndarray | None] = dataclasses.field(default_factory=dict)
    factor_names: tuple[str, ...] | None = None
    factor_sizes: tuple[int, ...] | None = None


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------

def load_dataset(source: str | os.PathLike,
                 *,
                 digits: Sequence[int] | None = None,
                 binarize: str = "none",
                 validation_fraction: float = 0.1,
                 label_column: str | None = None,
                 seed: int = 0,
                 data_dir: str | None = None,
                 standardize: bool = True) -> Dataset:
    """Loads a dataset into memory with normalised splits.

    Args:
        source: A tfds name, a local file/folder path, ``"sklearn_digits"``,
            ``"mnist_bundled"`` or ``"sprites[:N]"`` (see the module
            docstring for the accepted formats).
        digits: Labels to keep (e.g. ``[1, 8]``); every split is filtered.
        binarize: ``"none"``, ``"static"`` or ``"dynamic"`` (see module
            docstring). Only for image data.
        validation_fraction: Fraction of the train split carved out as
            ``valid`` when the source has no validation split.
        label_column: For ``.csv`` sources, the column holding labels.
        seed: Seed of the train/valid carve permutation.
        data_dir: tensorflow_datasets data directory (tfds default if None).
        standardize: Standardise tabular data with the train statistics.

    Returns:
        The loaded `Dataset`.

    Raises:
        DatasetError: If the source is missing, malformed, unreachable or the
            options do not fit the data.
    """
    if binarize not in BINARIZE_CHOICES:
        raise DatasetError(f"binarize={binarize!r} is not one of {BINARIZE_CHOICES}")
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation_fraction={validation_fraction} must be "
                           "strictly between 0 and 1")
    raw = _read_source(os.fspath(source), label_column=label_column, data_dir=data_dir)
    splits, labels = _check_shapes(raw)
    factors = _check_factors(raw, splits)
    if "valid" not in splits:
        splits, labels, factors = _carve_validation(raw.name, splits, labels, factors,
                                                    validation_fraction, seed)
    data_shape = tuple(int(d) for d in splits["train"].shape[1:])
    kind = "image" if len(data_shape) == 3 else "tabular"
    if digits is not None:
        splits, labels, factors = _filter_labels(raw.name, splits, labels, factors,
                                                 digits)

    feature_mean = feature_std = None
    if kind == "image":
        splits = _to_unit_interval(raw.name, splits)
    else:
        splits = _to_float(raw.name, splits)
        if standardize:
            feature_mean, feature_std = _standardize(splits)

    if binarize != "none":
        if kind != "image":
            raise DatasetError(f"{raw.name}: binarize={binarize!r} needs image data in "
                               f"[0, 1] but this is tabular data {data_shape}; use "
                               "binarize='none'")
        # "dynamic" leaves train to make_train_dataset and fixes the eval splits.
        for i, name in enumerate(_SPLIT_ORDER):
            if name in splits and (binarize == "static" or name != "train"):
                rng = np.random.default_rng([BINARIZATION_SEED, i])
                splits[name] = _bernoulli(splits[name], rng)

    return Dataset(name=raw.name, splits=splits, labels=labels,
                   data_shape=data_shape, kind=kind, eval_split="valid",
                   feature_mean=feature_mean, feature_std=feature_std,
                   binarize=binarize, label_names=raw.label_names,
                   factors=factors, factor_names=raw.factor_names,
                   factor_sizes=raw.factor_sizes)


def make_train_dataset(ds: Dataset,
                       batch_size: int,
                       *,
                       seed: int,
                       binarize: str = "none",
                       drop_remainder: bool = True,
                       split: str = "train",
                       initial_epoch: int = 0,
                       with_labels: bool = False) -> tf.data.Dataset:
    """Builds the training pipeline: one shuffled epoch per iteration.

    The split is held in memory once as a tensor; each epoch draws a
    permutation of the example indices and gathers whole batches. Every
    iteration over the returned dataset is one epoch with a new order: the
    k-th iteration (counting from ``initial_epoch``) uses the permutation
    seeded by ``(seed, k)``, so two pipelines built with the same seed yield
    identical batches epoch by epoch.

    Args:
        ds: The dataset.
        batch_size: Examples per batch.
        seed: Seed of the shuffling and of dynamic binarization.
        binarize: ``"dynamic"`` draws a fresh Bernoulli sample of every batch,
            seeded by ``(seed, batch index within the whole run)``, with the
            pixel probabilities rounded to multiples of 1/65536;
            ``"static"`` checks that the split is already binary (load it with
            ``binarize="static"``); ``"none"`` yields the values as stored.
        drop_remainder: Drop the last partial batch (every batch then has the
            static shape ``[batch_size, *data_shape]``).
        split: The split to iterate.
        initial_epoch: Epoch index of the first iteration, to resume a run
            with the same orders and samples it would have had.
        with_labels: Also yield the batch's labels (int32 ``[B]``), gathered
            with the same order.

    Returns:
        A `tf.data.Dataset` of float32 batches ``[B, *data_shape]``, or of
        ``(x, labels)`` pairs with `with_labels`.

    Raises:
        DatasetError: For an unknown split or binarize mode, binarizing
            tabular data, or a split smaller than one batch.
    """
    x = _split_array(ds, split)
    if with_labels and ds.labels.get(split) is None:
        raise DatasetError(f"{ds.name}: split {split!r} has no labels")
    if binarize not in BINARIZE_CHOICES:
        raise DatasetError(f"binarize={binarize!r} is not one of {BINARIZE_CHOICES}")
    if binarize != "none" and ds.kind != "image":
        raise DatasetError(f"{ds.name}: binarize={binarize!r} needs image data but this "
                           "is tabular data; use binarize='none'")
    if binarize == "static" and not _is_binary(x):
        raise DatasetError(f"{ds.name}: binarize='static' but split {split!r} is not "
                           "binary; load it with load_dataset(..., binarize='static')")
    if batch_size < 1:
        raise DatasetError(f"batch_size={batch_size} must be positive")
    n = len(x)
    num_batches = n // batch_size if drop_remainder else -(-n // batch_size)
    if num_batches == 0:
        raise DatasetError(f"{ds.name}: split {split!r} has {n} examples, fewer than "
                           f"batch_size={batch_size}; lower the batch size or pass "
                           "drop_remainder=False")

    if binarize == "dynamic":
        # Stored as Bernoulli thresholds on a 16-bit grid: one 32-bit random
        # word then serves two pixels, halving the cost of the RNG, which
        # dominates the pipeline. Probabilities are exact to 1/65536.
        data = tf.constant(np.round(x * _BERNOULLI_LEVELS).astype(np.int32))
    else:
        data = tf.constant(x, dtype=tf.float32)
    labels = (tf.constant(ds.labels[split].astype(np.int32)) if with_labels
              else None)
    seed_t = tf.constant(seed, tf.int64)
    dynamic_seed = tf.constant(seed + _DYNAMIC_SEED_SALT, tf.int64)
    # The epoch counter lives in the pipeline: every new iterator takes the
    # next epoch index, which seeds stateless ops (no global RNG state).
    epoch_counter = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False,
                                name="tfpvae_epoch_counter")

    def next_epoch(_):
        return epoch_counter.assign_add(1) - 1

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed_t, epoch]))
        if drop_remainder:
            order = tf.reshape(order[:num_batches * batch_size], [num_batches, batch_size])

        def batch(b):
            if drop_remainder:
                index = order[b]
            else:
                index = order[b * batch_size:(b + 1) * batch_size]
            xb = tf.gather(data, index)
            if binarize == "dynamic":
                step = epoch * num_batches + b
                xb = _bernoulli_from_thresholds(xb, tf.stack([dynamic_seed, step]))
            return xb if labels is None else (xb, tf.gather(labels, index))

        return tf.data.Dataset.range(num_batches).map(
            batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    pipeline = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
    pipeline = pipeline.map(next_epoch).flat_map(epoch_batches)
    return pipeline.prefetch(tf.data.AUTOTUNE)


def _bernoulli_from_thresholds(thresholds: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Samples float32 {0, 1} with P(1) = thresholds / 65536 (stateless)."""
    size = tf.size(thresholds)
    words = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None,
                                        maxval=None, dtype=tf.uint32)
    u = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    u = tf.reshape(tf.cast(u, tf.int32), tf.shape(thresholds))
    return tf.cast(u < thresholds, tf.float32)


def make_eval_dataset(ds: Dataset, batch_size: int,
                      split: str | None = None) -> tf.data.Dataset:
    """Builds an evaluation pipeline in the stored order.

    Batches follow the order of ``ds.splits[split]``, so ``ds.labels[split]``
    lines up with the concatenated batches. The last batch may be partial.

    Args:
        ds: The dataset.
        batch_size: Examples per batch.
        split: The split to iterate; ``ds.eval_split`` if None.

    Returns:
        A `tf.data.Dataset` of float32 batches ``[<=B, *data_shape]``.

    Raises:
        DatasetError: For an unknown split or a non-positive batch size.
    """
    split = ds.eval_split if split is None else split
    x = _split_array(ds, split)
    if batch_size < 1:
        raise DatasetError(f"batch_size={batch_size} must be positive")
    data = tf.constant(x, dtype=tf.float32)
    num_batches = -(-len(x) // batch_size)
    pipeline = tf.data.Dataset.range(num_batches).map(
        lambda b: data[b * batch_size:(b + 1) * batch_size],
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pipeline.prefetch(tf.data.AUTOTUNE)


def download_host_reachable(timeout: float = DOWNLOAD_PROBE_TIMEOUT) -> bool:
    """Returns whether the tfds download host (or the HTTPS proxy) answers.

    The connection attempt runs in a daemon thread joined with ``timeout``
    because DNS lookups ignore socket timeouts.

    Args:
        timeout: Seconds to wait before calling the network unreachable.
    """
    host, port = DOWNLOAD_PROBE_HOST
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            host = parsed.hostname
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="tfpvae-network-probe")
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0]


def resolve_default_source(data_dir: str | None = None) -> str:
    """Picks the trainer's default dataset: tfds MNIST if it can be had.

    Returns ``"mnist"`` (the full tensorflow_datasets MNIST) when it is
    already prepared in the tfds data dir, or, failing that, when the
    download host answers the network probe (`download_host_reachable`,
    bounded by its timeout); otherwise ``"mnist_bundled"``, the 10,000 MNIST
    test images shipped with tfpvae. Nothing is downloaded here. Logs one
    INFO line saying which and why.

    Args:
        data_dir: tensorflow_datasets data directory (tfds default if None).

    Returns:
        ``"mnist"`` or ``"mnist_bundled"``, a source for `load_dataset`.
    """
    name = _DEFAULT_TFDS_NAME
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
        builder = tfds.builder(name, data_dir=data_dir)
        prepared, where = builder.is_prepared(), builder.data_dir
    except Exception as e:  # tfds missing or broken: the bundled copy still works
        logging.info("Default dataset: %s (tensorflow_datasets cannot open %r: %s)",
                     MNIST_BUNDLED, name, _one_line(e))
        return MNIST_BUNDLED
    if prepared:
        logging.info("Default dataset: %s (tensorflow_datasets, prepared in %s)",
                     name, where)
        return name
    if download_host_reachable():
        logging.info("Default dataset: %s (tensorflow_datasets; not prepared in %s yet, "
                     "it is downloaded there on first load)", name, where)
        return name
    logging.info("Default dataset: %s, the 10,000 MNIST test images shipped with "
                 "tfpvae (tfds %r is not prepared in %s and %s is unreachable); for the "
                 "full 70,000-image MNIST go online once, or pass --dataset=%s with "
                 "--data_dir of a prepared copy, or --dataset=PATH of a local MNIST IDX "
                 "folder or .npz", MNIST_BUNDLED, name, where, DOWNLOAD_PROBE_HOST[0],
                 name)
    return MNIST_BUNDLED


# --------------------------------------------------------------------------
# Ground truth for the sampled disentanglement scores
# --------------------------------------------------------------------------

class GridSampler:
    """A dataset holding every combination of its factors, as ground truth.

    Implements `tfpvae.disentanglement.GroundTruthSampler`: factors are drawn
    uniformly over the grid, and the observation of a combination is looked
    up among the examples of every split (dsprites and shapes3d are complete
    grids, split into train and valid only by the carve). Under dynamic
    binarization an observation is a Bernoulli sample of the stored
    intensities, drawn with the given rng (the valid and test splits are
    binary already, so this is the identity there).

    Args:
        dataset: A `Dataset` with factors that cover the whole grid
            ``factor_sizes`` (of duplicates, one is used).

    Attributes:
        num_factors: Number of factors K.
        factor_sizes: Number of values of each factor.
        factor_names: The factors' names.

    Raises:
        DatasetError: The dataset has no factors, or lacks some combinations.
    """

    def __init__(self, dataset: Dataset):
        _require_factors(dataset)
        self.factor_sizes = tuple(int(k) for k in dataset.factor_sizes)
        self.factor_names = dataset.factor_names
        self.num_factors = len(self.factor_sizes)
        self._images = [dataset.splits[split] for split in dataset.splits]  # No copies.
        self._bernoulli = dataset.binarize == "dynamic"
        total = math.prod(self.factor_sizes)
        self._row = np.full(total, -1, np.int64)  # Flat grid index -> global row.
        self._starts = np.cumsum([0] + [len(x) for x in self._images[:-1]])
        for start, split in zip(self._starts, dataset.splits):
            flat = np.ravel_multi_index(tuple(dataset.factors[split].T),
                                        self.factor_sizes)
            rows = start + np.arange(len(flat))
            unseen = self._row[flat] < 0
            self._row[flat[unseen]] = rows[unseen]
        held = int(np.count_nonzero(self._row >= 0))
        if held < total:
            raise DatasetError(
                f"{dataset.name}: holds {held:,} of the {total:,} combinations of its "
                f"factors, a subset of the grid; the sampled scores (beta-VAE, "
                f"FactorVAE) need them all: load the complete dataset")

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Factor indices ``[n, K]``, uniform over the grid (int64)."""
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes],
                        axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors,
                                         rng: np.random.Generator) -> np.ndarray:
        """The examples of ``factors`` ``[n, K]``: float32 ``[n, *data_shape]``."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(f"factors must have shape [n, {self.num_factors}]; got "
                             f"{factors.shape}")
        rows = self._row[np.ravel_multi_index(tuple(factors.T), self.factor_sizes)]
        part = np.searchsorted(self._starts, rows, side="right") - 1
        out = np.empty((len(rows), *self._images[0].shape[1:]), np.float32)
        for i in np.unique(part):
            where = part == i
            out[where] = self._images[i][rows[where] - self._starts[i]]
        return _bernoulli(out, rng) if self._bernoulli else out


def factor_sampler(dataset: Dataset):
    """The ground truth of a dataset with factors, for the sampled scores.

    Args:
        dataset: A `Dataset` with factors.

    Returns:
        A `tfpvae.disentanglement.GroundTruthSampler`: for ``sprites[:N]``
        `tfpvae.sprites.SpritesSampler` (renders any combination, so N does
        not matter), else a `GridSampler` over the dataset's examples.

    Raises:
        DatasetError: The dataset has no factors, or only part of its grid.
    """
    _require_factors(dataset)
    if _SPRITES_NAME.match(dataset.name):
        return sprites_lib.SpritesSampler()
    return GridSampler(dataset)


def _require_factors(dataset: Dataset) -> None:
    if not dataset.has_factors:
        raise DatasetError(f"{dataset.name} has no factor labels; use data with known "
                           f"factors of variation: {FACTOR_SOURCES_HINT}")


# --------------------------------------------------------------------------
# Source resolution and readers
# --------------------------------------------------------------------------

def _read_source(source: str, *, label_column: str | None,
                 data_dir: str | None) -> _Raw:
    """Dispatches a source string to the matching reader."""
    path = Path(source).expanduser()
    if label_column is not None and path.suffix.lower() != ".csv":
        raise DatasetError(f"{source}: label_column={label_column!r} only applies to "
                           ".csv sources; npz labels go in '<split>_labels' arrays")
    if source.lower() in SKLEARN_DIGITS_ALIASES:
        return _read_sklearn_digits()
    if source.lower() == MNIST_BUNDLED:
        return _read_bundled_mnist()
    if match := _SPRITES_NAME.match(source.strip().lower()):
        return _read_sprites(source.strip().lower(), match["count"])
    if path.exists():
        if path.is_dir():
            return _read_folder(path)
        suffix = path.suffix.lower()
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: file is empty")
        if suffix == ".npz":
            return _read_npz(path)
        if suffix == ".npy":
            return _read_npy(path)
        if suffix == ".csv":
            return _read_csv(path, label_column)
        if suffix == ".amat":
            return _Raw(str(path), {"train": _read_amat(path)}, {"train": None})
        if _IDX_NAME.match(path.name):
            raise DatasetError(f"{path}: pass the folder that holds the IDX files, "
                               f"not a single file (--dataset={path.parent})")
        raise DatasetError(f"{path}: unsupported file type {suffix or '(none)'}; "
                           f"use {_LOCAL_HINT}")
    if source.startswith(("/", ".", "~")) or path.suffix.lower() in _LOCAL_SUFFIXES:
        raise DatasetError(f"{source}: no such file or folder")
    return _read_tfds(source, data_dir)


def _read_folder(path: Path) -> _Raw:
    """Reads a folder of MNIST IDX files or binarized-MNIST .amat files."""
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    if any(_IDX_NAME.match(n) for n in names):
        return _read_idx_folder(path, names)
    amat = {m["split"]: path / n for n in names if (m := _AMAT_NAME.match(n))}
    if amat:
        splits = {s: _read_amat(amat[s]) for s in _SPLIT_ORDER if s in amat}
        if "train" not in splits:
            raise DatasetError(f"{path}: has {sorted(p.name for p in amat.values())} but no "
                               "binarized_mnist_train.amat")
        return _Raw(str(path), splits, {s: None for s in splits})
    raise DatasetError(f"{path}: folder holds neither MNIST IDX files "
                       "(train-images-idx3-ubyte[.gz], t10k-...) nor "
                       "binarized_mnist_{train,valid,test}.amat files")


def _read_idx_folder(path: Path, names: list[str]) -> _Raw:
    """Reads train/t10k IDX image (and label) files from a folder."""
    found: dict[tuple[str, str], Path] = {}
    for name in names:
        if m := _IDX_NAME.match(name):
            key = (m["prefix"], m["what"])
            if key in found:
                raise DatasetError(f"{path}: both {found[key].name} and {name} present; "
                                   "keep one of them")
            found[key] = path / name
    splits, labels = {}, {}
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images_file = found.get((prefix, "images"))
        labels_file = found.get((prefix, "labels"))
        if images_file is None:
            if labels_file is not None:
                raise DatasetError(f"{labels_file}: labels without a matching "
                                   f"{prefix}-images-idx3-ubyte file")
            continue
        images = _read_idx(images_file)
        if images.ndim != 3:
            raise DatasetError(f"{images_file}: expected images [N, H, W] but the IDX "
                               f"header describes shape {images.shape}")
        splits[split] = images
        labels[split] = None
        if labels_file is not None:
            y = _read_idx(labels_file)
            if y.ndim != 1 or len(y) != len(images):
                raise DatasetError(f"{labels_file}: expected {len(images)} labels but "
                                   f"the IDX header describes shape {y.shape}")
            labels[split] = y.astype(np.int64)
    if "train" not in splits:
        # Only the t10k pair: it is all the data there is, split it.
        splits = {"train": splits["test"]}
        labels = {"train": labels["test"]}
    return _Raw(str(path), splits, labels)


def _read_idx(path: Path) -> np.ndarray:
    """Parses one IDX file (plain or gzip) into an array of its header shape."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({_one_line(e)})") from None
    return _parse_idx(blob, path)


def _parse_idx(blob: bytes, path: Path | Traversable) -> np.ndarray:
    """Parses the (uncompressed) bytes of an IDX file; ``path`` names it in errors."""
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    ndim = blob[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(blob) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[blob[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(blob) - header != expected:
        raise DatasetError(f"{path}: IDX header says shape {shape} ({expected} bytes) "
                           f"but the file holds {len(blob) - header} data bytes")
    data = np.frombuffer(blob, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _bundled_mnist_dir() -> Traversable:
    """The package-data folder holding the bundled MNIST IDX files."""
    return importlib.resources.files("tfpvae") / "data_files" / "mnist"


def _read_bundled_mnist() -> _Raw:
    """The MNIST test set shipped with tfpvae: 10,000 labelled 28x28 images."""
    folder = _bundled_mnist_dir()
    images = _read_bundled_idx(folder / _BUNDLED_MNIST_IMAGES[0], _BUNDLED_MNIST_IMAGES[1])
    labels = _read_bundled_idx(folder / _BUNDLED_MNIST_LABELS[0], _BUNDLED_MNIST_LABELS[1])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DatasetError(f"{folder}: bundled MNIST has images {images.shape} and labels "
                           f"{labels.shape}; reinstall tfpvae")
    return _Raw(MNIST_BUNDLED, {"train": images}, {"train": labels.astype(np.int64)})


def _read_bundled_idx(resource: Traversable, sha256: str) -> np.ndarray:
    """Reads one gzip IDX file of the package data after checking its sha256."""
    try:
        packed = resource.read_bytes()
    except OSError as e:
        raise DatasetError(f"{resource}: bundled data file is missing or unreadable "
                           f"({_one_line(e)}); reinstall tfpvae") from None
    actual = hashlib.sha256(packed).hexdigest()
    if actual != sha256:
        raise DatasetError(f"{resource}: bundled data file is damaged (sha256 "
                           f"{actual[:12]}..., expected {sha256[:12]}...); reinstall "
                           "tfpvae, or use --dataset=mnist")
    return _parse_idx(gzip.decompress(packed), resource)


def _read_amat(path: Path) -> np.ndarray:
    """Reads a binarized-MNIST .amat text file into ``[N, S, S]`` images."""
    try:
        x = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, OSError) as e:
        raise DatasetError(f"{path}: cannot parse .amat text ({_one_line(e)}); expected "
                           "one image per line of space-separated 0/1 values") from None
    if x.size == 0:
        raise DatasetError(f"{path}: file holds no images")
    side = int(round(np.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
        raise DatasetError(f"{path}: lines have {x.shape[1]} values, not a square "
                           "image (binarized MNIST has 784 = 28x28)")
    return x.reshape(len(x), side, side)


def _read_npz(path: Path) -> _Raw:
    """Reads a .npz archive (see the module docstring for the key names)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DatasetError(f"{path}: cannot read .npz ({_one_line(e)})") from None
    if not arrays:
        raise DatasetError(f"{path}: .npz holds no arrays")
    splits, labels, used = {}, {}, set()
    for alias, split in _SPLIT_ALIASES:
        for key in (alias, f"x_{alias}"):
            if key in arrays:
                if split in splits:
                    both = sorted(_keys_for(split) & set(arrays))
                    raise DatasetError(f"{path}: several arrays for split {split!r} "
                                       f"({both}); keep one")
                splits[split] = arrays[key]
                used.add(key)
        for key in (f"{alias}_labels", f"y_{alias}"):
            if key in arrays:
                labels[split] = arrays[key]
                used.add(key)
    if splits:
        if "train" not in splits:
            raise DatasetError(f"{path}: has arrays {sorted(arrays)} but no 'train' "
                               "(or 'x_train') array")
        stray = sorted(set(labels) - set(splits))
        if stray:
            raise DatasetError(f"{path}: labels for split(s) {stray} without data arrays")
        ignored = sorted(set(arrays) - used)
        if ignored:
            logging.warning("%s: ignoring unrecognised arrays %s", path, ignored)
        return _Raw(str(path), splits, {s: labels.get(s) for s in splits})
    label_keys = [k for k in arrays if k in _LABEL_ONLY_KEYS]
    data_keys = [k for k in arrays if k not in _LABEL_ONLY_KEYS]
    if len(data_keys) != 1 or len(label_keys) > 1:
        raise DatasetError(f"{path}: cannot tell the data arrays apart in {sorted(arrays)}; "
                           "name them train/valid/test (or x_train/x_test) with "
                           "<split>_labels, or store a single array")
    y = arrays[label_keys[0]] if label_keys else None
    return _Raw(str(path), {"train": arrays[data_keys[0]]}, {"train": y})


def _keys_for(split: str) -> set[str]:
    """Returns the npz keys that name the data of ``split``."""
    aliases = [a for a, s in _SPLIT_ALIASES if s == split]
    return {k for a in aliases for k in (a, f"x_{a}")}


def _read_npy(path: Path) -> _Raw:
    """Reads a single .npy array as all data."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read .npy ({_one_line(e)})") from None
    return _Raw(str(path), {"train": x}, {"train": None})


def _read_csv(path: Path, label_column: str | None) -> _Raw:
    """Reads a .csv table with a header row into feature vectors (+ labels)."""
    rows, lines = [], []  # non-blank rows and their line numbers in the file
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read csv ({_one_line(e)})") from None
    if len(rows) < 2:
        raise DatasetError(f"{path}: csv needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    body, lines = rows[1:], lines[1:]
    for line, row in zip(lines, body):
        if len(row) != len(header):
            raise DatasetError(f"{path}: line {line} has {len(row)} fields but the header "
                               f"has {len(header)}")
    if label_column is not None and label_column not in header:
        raise DatasetError(f"{path}: label_column {label_column!r} is not in the header "
                           f"{header}")
    columns = list(zip(*body))
    features, feature_names, y, label_names = [], [], None, None
    for name, column in zip(header, columns):
        if name == label_column:
            empty = [line for line, v in zip(lines, column) if not v.strip()]
            if empty:
                n = len(empty)
                raise DatasetError(f"{path}: split 'train' has {n} empty "
                                   f"{_plural(n, 'label')} in column {name!r} "
                                   f"({_plural(n, 'line')} {_first_few(empty)}); fill "
                                   f"{_plural(n, 'it', 'them')} in or drop "
                                   f"{_plural(n, 'that line', 'those lines')}")
            y, label_names = _encode_labels(column)
            continue
        try:
            features.append(np.array([_csv_number(v) for v in column], np.float64))
        except ValueError:
            bad = next(v for v in column if not _is_float(v))
            raise DatasetError(f"{path}: column {name!r} is not numeric (value {bad!r}); "
                               "drop it or name it with label_column") from None
        feature_names.append(name)
    if not features:
        raise DatasetError(f"{path}: no feature columns besides the label column")
    x = np.stack(features, axis=1)
    _check_finite(str(path), "train", x, lines=lines, columns=feature_names)
    return _Raw(str(path), {"train": x}, {"train": y}, label_names)


def _csv_number(value: str) -> float:
    """A csv cell as a float; empty and NA-like cells are missing (NaN)."""
    if value.strip().lower() in _CSV_MISSING:
        return float("nan")
    return float(value)


def _is_float(value: str) -> bool:
    try:
        _csv_number(value)
    except ValueError:
        return False
    return True


def _encode_labels(column: Sequence[str]) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels from csv strings; non-integers are coded by sorted name."""
    values = [v.strip() for v in column]
    try:
        numbers = np.array([float(v) for v in values])
        if np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            return numbers.astype(np.int64), None
    except ValueError:
        pass
    names, codes = np.unique(np.array(values), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


def _read_sklearn_digits() -> _Raw:
    """scikit-learn's bundled 8x8 digits, 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return _Raw("sklearn_digits", {"train": images},
                {"train": bunch.target.astype(np.int64)})


def _read_sprites(name: str, count: str | None) -> _Raw:
    """``count`` (default `SPRITES_DEFAULT_EXAMPLES`) generated sprites with
    their factors, drawn with the fixed `SPRITES_SEED`."""
    total = sprites_lib.NUM_IMAGES
    n = SPRITES_DEFAULT_EXAMPLES
    if count is not None:
        try:
            n = int(count.replace("_", ""))
        except ValueError:
            n = -1
        if not 2 <= n <= total:
            raise DatasetError(f"{name!r}: N in sprites:N must be a whole number of "
                               f"examples from 2 to {total:,}, e.g. "
                               f"sprites:{SPRITES_DEFAULT_EXAMPLES}")
    images, factors = sprites_lib.load(n, seed=SPRITES_SEED)
    # `load` sorts by factors; a fixed random order makes every prefix (e.g.
    # evaluate --max_examples) a uniform sample, as in a shuffled tfds dataset.
    order = np.random.default_rng([SPRITES_SEED, 1]).permutation(n)
    images, factors = images[order], factors[order]
    return _Raw(name, {"train": images}, {"train": None},
                factors={"train": factors},
                factor_names=tuple(sprites_lib.FACTOR_NAMES),
                factor_sizes=tuple(sprites_lib.FACTOR_SIZES))


def _read_tfds(name: str, data_dir: str | None) -> _Raw:
    """Loads a tensorflow_datasets dataset into numpy, downloading if online."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split("/")[0].split(":")[0], known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DatasetError(f"{name!r} is neither an existing local path nor a "
                           f"tensorflow_datasets name{hint}; pass a tfds name such as "
                           f"'mnist', or {_LOCAL_HINT}") from None
    except Exception as e:  # tfds raises plain ValueErrors, import errors, ...
        raise DatasetError(f"cannot open tfds dataset {name!r}: {_one_line(e)}") from None

    if not builder.is_prepared():
        if not download_host_reachable():
            host = DOWNLOAD_PROBE_HOST[0]
            raise DatasetError(
                f"tfds dataset {name!r} is not cached in {builder.data_dir} and cannot be "
                f"downloaded offline ({host} unreachable); point --data_dir at a prepared "
                f"copy or use a local source instead, e.g. --dataset=/path/to/file.npz, "
                f"an MNIST IDX folder, --dataset={MNIST_BUNDLED} (the 10,000 MNIST test "
                f"images shipped with tfpvae) or --dataset=sklearn_digits")
        try:
            builder.download_and_prepare()
        except Exception as e:  # download/extraction failures of any kind
            raise DatasetError(f"cannot download/prepare tfds dataset {name!r}: "
                               f"{_one_line(e)}") from None

    features = builder.info.features
    if "image" not in features.keys():
        raise DatasetError(f"tfds dataset {name!r} has no 'image' feature (features: "
                           f"{sorted(features.keys())}); use a local .csv/.npz for "
                           "non-image data")
    has_label = "label" in features.keys()
    label_names = None
    if has_label and hasattr(features["label"], "names"):
        label_names = list(features["label"].names)
    factor_keys = TFDS_FACTORS.get(_tfds_base_name(name), ())
    missing = [key for key in factor_keys if key not in features.keys()]
    if missing:
        raise DatasetError(f"tfds dataset {name!r} lacks the factor features {missing} "
                           f"(features: {sorted(features.keys())}); update "
                           "tensorflow_datasets or tfpvae.data.TFDS_FACTORS")

    # Split names come from the prepared metadata; when it lists none (tfds
    # mock data without metadata files) try the conventional names.
    available = list(builder.info.splits.keys()) or ["train", "validation", "test"]
    splits, labels, factors = {}, {}, {}
    for tfds_split in available:
        split = dict(_SPLIT_ALIASES).get(tfds_split)
        if split is None or split in splits:
            if split is None:
                logging.info("tfds %s: ignoring split %r", name, tfds_split)
            continue
        # Read in chunks rather than with batch_size=-1, which batches by the
        # metadata's example count and crashes when that count is unknown.
        images, split_labels, split_factors = [], [], []
        try:
            chunks = builder.as_dataset(split=tfds_split, batch_size=_TFDS_CHUNK)
            for chunk in tfds.as_numpy(chunks):
                images.append(chunk["image"])
                if has_label:
                    split_labels.append(chunk["label"])
                if factor_keys:
                    split_factors.append(np.stack([chunk[k] for k in factor_keys], 1))
        except Exception as e:  # unreadable or ragged examples
            raise DatasetError(f"cannot read split {tfds_split!r} of tfds dataset "
                               f"{name!r}: {_one_line(e)}") from None
        if not images:
            raise DatasetError(f"split {tfds_split!r} of tfds dataset {name!r} is empty")
        splits[split] = np.concatenate(images)
        labels[split] = np.concatenate(split_labels).astype(np.int64) if has_label else None
        factors[split] = np.concatenate(split_factors) if factor_keys else None
    if "train" not in splits:
        raise DatasetError(f"tfds dataset {name!r} has no train split (splits: {available})")
    if not factor_keys:
        return _Raw(name, splits, labels, label_names)
    return _Raw(name, splits, labels, label_names, factors,
                factor_names=tuple(k.removeprefix("label_") for k in factor_keys),
                factor_sizes=tuple(int(features[k].num_classes) for k in factor_keys))


def _tfds_base_name(name: str) -> str:
    """The dataset of a tfds name, without config and version
    (``"dsprites:2.0.0"`` -> ``"dsprites"``)."""
    return name.split("/")[0].split(":")[0].strip().lower()


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

def _check_shapes(raw: _Raw) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Validates values, ranks, dtypes and labels; adds the channel axis to [N, H, W]."""
    splits, labels = {}, {}
    per_example = None
    for split in _SPLIT_ORDER:
        if split not in raw.splits:
            continue
        x = np.asarray(raw.splits[split])
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DatasetError(f"{raw.name}: split {split!r} has non-numeric dtype "
                               f"{x.dtype}")
        _check_finite(raw.name, split, x)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if x.ndim not in (2, 4):
            raise DatasetError(f"{raw.name}: split {split!r} has shape {x.shape}; expected "
                               "images [N, H, W] or [N, H, W, C], or feature vectors "
                               "[N, D]")
        if len(x) == 0:
            raise DatasetError(f"{raw.name}: split {split!r} is empty")
        if per_example is None:
            per_example = x.shape[1:]
        elif x.shape[1:] != per_example:
            raise DatasetError(f"{raw.name}: split {split!r} has examples of shape "
                               f"{x.shape[1:]} but train has {per_example}")
        splits[split] = x
        labels[split] = _check_labels(raw.name, split, raw.labels.get(split), len(x))
    return splits, labels


def _check_factors(raw: _Raw, splits: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray | None]:
    """Validates the factors of each split: int64 ``[N, num_factors]``, each
    in ``[0, factor_sizes[k])``; None per split for a source without."""
    if raw.factor_sizes is None:
        return {split: None for split in splits}
    sizes = np.asarray(raw.factor_sizes, np.int64)
    factors = {}
    for split, x in splits.items():
        v = raw.factors.get(split)
        if v is None:
            raise DatasetError(f"{raw.name}: split {split!r} has no factors but other "
                               "splits have")
        v = np.asarray(v)
        if v.shape != (len(x), len(sizes)) or not np.issubdtype(v.dtype, np.integer):
            raise DatasetError(f"{raw.name}: factors of split {split!r} have shape "
                               f"{v.shape} and dtype {v.dtype}; expected integers of "
                               f"shape {(len(x), len(sizes))}")
        bad = np.flatnonzero(((v < 0) | (v >= sizes)).any(axis=0))
        if bad.size:
            k = int(bad[0])
            raise DatasetError(f"{raw.name}: factor {raw.factor_names[k]!r} of split "
                               f"{split!r} lies outside [0, {sizes[k]})")
        factors[split] = v.astype(np.int64)
    return factors


def _check_finite(name: str, split: str, x: np.ndarray, *,
                  lines: Sequence[int] | None = None,
                  columns: Sequence[str] | None = None) -> None:
    """Rejects NaN and infinite values, saying how many and where they are.

    Args:
        name: The source, for the message.
        split: The split ``x`` is, for the message.
        x: The split's data ``[N, ...]``; integer data passes unchecked.
        lines: For a ``.csv``, the file's line number of each example, named
            in the message instead of array rows.
        columns: For a ``.csv``, the names of the feature columns ``[D]``.

    Raises:
        DatasetError: If any value of ``x`` is NaN or infinite.
    """
    if not np.issubdtype(x.dtype, np.inexact) or x.ndim == 0 or x.size == 0:
        return  # integers are finite; bad ranks are reported by the caller
    finite = np.isfinite(x)
    if finite.all():
        return
    n_nan = int(np.count_nonzero(np.isnan(x)))
    n_inf = finite.size - int(np.count_nonzero(finite)) - n_nan
    counts = " and ".join(f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "infinite"))
                          if n)
    last = n_inf or n_nan  # "1 NaN and 2 infinite values": the noun follows the last
    counts += " " + _plural(last, "value")
    bad = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
    if lines is None:
        unit, positions = "row", bad.tolist()
        where = f"array {_plural(len(bad), unit)} {_first_few(positions)}"
    else:
        unit, positions = "line", [lines[i] for i in bad]
        where = f"{_plural(len(bad), unit)} {_first_few(positions)}"
        if n_nan:
            counts += f" (empty or NaN {_plural(n_nan, 'cell')})"
    if columns is not None:
        bad_columns = [columns[j] for j in np.flatnonzero(~finite.all(axis=0))]
        where += f"; {_plural(len(bad_columns), 'column')} {_first_few(bad_columns)}"
    that = _plural(len(bad), f"that {unit}", f"those {unit}s")
    raise DatasetError(f"{name}: split {split!r} holds {counts} in {len(bad)} of {len(x)} "
                       f"examples ({where}); clean the file or drop {that}")


def _plural(n: int, one: str, many: str | None = None) -> str:
    """``one`` if ``n == 1``, else ``many`` (default: ``one`` + "s")."""
    return one if n == 1 else (many or f"{one}s")


def _first_few(items: Sequence, limit: int = 5) -> str:
    """Joins the first ``limit`` items with commas, then "..." if more."""
    shown = [repr(i) if isinstance(i, str) else str(i) for i in items[:limit]]
    return ", ".join(shown) + (", ..." if len(items) > limit else "")


def _check_labels(name: str, split: str, y: np.ndarray | None,
                  n: int) -> np.ndarray | None:
    """Returns labels as an int64 vector of length ``n`` (or None)."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise DatasetError(f"{name}: labels of split {split!r} have shape {y.shape} but "
                           f"the split has {n} examples; expected a vector of {n} "
                           "integer labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
            raise DatasetError(f"{name}: labels of split {split!r} are not integers "
                               f"(dtype {y.dtype})")
    return y.astype(np.int64)


def _carve_validation(name, splits, labels, factors, fraction, seed):
    """Splits ``valid`` off ``train`` with a permutation fixed by ``seed``.

    Both parts keep the original relative order of their examples; labels and
    factors follow their examples. Returns ``(splits, labels, factors)``.
    """
    n = len(splits["train"])
    if n < 2:
        raise DatasetError(f"{name}: {n} example(s) cannot be split into train and valid")
    n_valid = min(max(int(round(n * fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    carved = []
    for per_split in (splits, labels, factors):
        whole = per_split["train"]
        new = {"train": None if whole is None else whole[train_idx],
               "valid": None if whole is None else whole[valid_idx]}
        if "test" in splits:
            new["test"] = per_split["test"]
        carved.append(new)
    logging.info("%s: no validation split; carved %d of %d train examples (seed %d)",
                 name, n_valid, n, seed)
    return tuple(carved)


def _filter_labels(name, splits, labels, factors, digits):
    """Keeps only the examples whose label is in ``digits``, in every split
    (with their factors); returns ``(splits, labels, factors)``."""
    wanted = np.array(sorted({int(d) for d in digits}), np.int64)
    if wanted.size == 0:
        raise DatasetError("digits is empty; pass the labels to keep, e.g. digits=[1, 8]")
    unlabelled = [s for s, y in labels.items() if y is None]
    if unlabelled:
        raise DatasetError(f"{name}: digits={wanted.tolist()} needs labels but split(s) "
                           f"{unlabelled} have none; drop the digits option or use a "
                           "labelled source")
    present = np.unique(labels["train"])
    missing = [int(d) for d in wanted if d not in present]
    if missing:
        raise DatasetError(f"{name}: digits {missing} do not occur in the train labels "
                           f"(labels present: {present.tolist()})")
    new_splits, new_labels, new_factors = {}, {}, {}
    for split, x in splits.items():
        keep = np.isin(labels[split], wanted)
        if not keep.any():
            raise DatasetError(f"{name}: no examples of digits {wanted.tolist()} in split "
                               f"{split!r}")
        new_splits[split], new_labels[split] = x[keep], labels[split][keep]
        v = factors.get(split)
        new_factors[split] = None if v is None else v[keep]
    return new_splits, new_labels, new_factors


def _to_unit_interval(name, splits):
    """Casts images to float32 in [0, 1], dividing by 255 when needed."""
    lo = min(float(x.min()) for x in splits.values())
    hi = max(float(x.max()) for x in splits.values())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
        raise DatasetError(f"{name}: image values span [{lo:g}, {hi:g}]; expected [0, 1] "
                           "or 0..255 pixels")
    if hi <= 1.0:
        return {s: x.astype(np.float32) for s, x in splits.items()}
    return {s: (x.astype(np.float32) / np.float32(255.0)) for s, x in splits.items()}


def _to_float(name, splits):
    """Casts tabular data to float32, rejecting NaN or infinite values."""
    out = {}
    for split, x in splits.items():
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{name}: split {split!r} contains NaN or infinite values; "
                               "impute or drop them first")
        out[split] = x
    return out


def _standardize(splits):
    """Standardises every split in place with the train mean and std."""
    train = splits["train"].astype(np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    for split in splits:
        splits[split] = (splits[split] - mean) / std
    return mean, std


def _bernoulli(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Samples x' ~ Bernoulli(x) elementwise, as float32."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _split_array(ds: Dataset, split: str) -> np.ndarray:
    if split not in ds.splits:
        raise DatasetError(f"{ds.name}: no split {split!r}; splits are {list(ds.splits)}")
    return ds.splits[split]


def _one_line(error: BaseException) -> str:
    """The first line of an exception message, shortened."""
    text = str(error).strip().splitlines()
    first = text[0].rstrip(" :") if text else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."
