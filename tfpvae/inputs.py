"""The data of a run: `tfpvae.data` driven by a run's settings.

Training, `python -m tfpvae.evaluate` and `python -m tfpvae.plot` load the
data of a run the same way, through `load_data(config)`: the source, the
binarization (``--binarize=auto`` resolved against the likelihood), the
digit subset, the validation fraction, the label column and the
standardisation all come from the `TrainConfig`. `check_data` refuses data
outside the likelihood's support; `train_batches` and `eval_arrays` hand a
model the fields its batches carry (`LatentVariableModel.batch_fields`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from absl import logging

from tfpvae import data as data_lib


def load_data(config) -> data_lib.Dataset:
    """Loads `config.dataset`, resolving binarize="auto" (see tfpvae.config)
    and the default source '' (`data.resolve_default_source`).

    Args:
        config: A `tfpvae.config.TrainConfig`.

    Raises:
        data.DatasetError: If the data cannot be loaded.
    """
    if not config.dataset:
        config = config.replace(dataset=data_lib.resolve_default_source(
            config.data_dir or None))
    kwargs = dict(digits=config.digits or None,
                  validation_fraction=config.validation_fraction,
                  label_column=config.label_column or None, seed=config.seed,
                  data_dir=config.data_dir or None,
                  standardize=config.standardize)
    binarize = "none" if config.binarize == "auto" else config.binarize
    dataset = data_lib.load_dataset(config.dataset, binarize=binarize, **kwargs)
    if (config.binarize == "auto" and config.likelihood == "bernoulli"
            and dataset.kind == "image" and not dataset.is_binary):
        logging.info("--binarize=auto: %s is not binary and the likelihood is "
                     "bernoulli; binarizing dynamically (a fresh sample of "
                     "each batch every epoch).", dataset.name)
        dataset = data_lib.load_dataset(config.dataset, binarize="dynamic",
                                        **kwargs)
    return dataset


def check_data(model, dataset: data_lib.Dataset) -> None:
    """Raises ValueError when the data lies outside the likelihood's support.

    Under dynamic binarization the train split holds intensities that are
    binarized batch by batch, so only the other splits are checked. A model
    without a `likelihood` attribute is not checked.
    """
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None:
        return
    for split, x in dataset.splits.items():
        if split == "train" and dataset.binarize == "dynamic":
            continue
        try:
            likelihood.check_data(x)
        except ValueError as e:
            raise ValueError(f"{dataset.name} ({split} split): {e}") from None


def num_classes(config, dataset: data_lib.Dataset) -> int:
    """The classes of the labels a conditional or semi-supervised model is
    conditioned on (0 for any other model): the label names', or the
    largest label + 1.

    Raises:
        data.DatasetError: The data has no labels, or its labels are
            non-integer numbers.
    """
    if not (config.conditional or config.semi_supervised):
        return 0
    flag = "--semi_supervised" if config.semi_supervised else "--conditional"
    labels = dataset.labels.get("train")
    if labels is None:
        raise data_lib.DatasetError(
            f"{flag} needs labels, and {dataset.name} has none; use a labelled "
            f"dataset (mnist, mnist_bundled, sklearn_digits, an IDX folder, a "
            f".npz with labels, or a .csv with --label_column) or drop {flag}.")
    names = dataset.label_names
    if names is not None and all(_is_number(n) for n in names):
        raise data_lib.DatasetError(
            f"{flag}: the label column of {dataset.name} holds non-integer "
            f"numbers (e.g. {names[0]}); class labels must be integers or "
            f"names.")
    if names is not None:
        return len(names)
    return int(max(int(v.max()) for v in dataset.labels.values()
                   if v is not None and len(v))) + 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class LabelledSubset:
    """The labelled examples of a semi-supervised run.

    Attributes:
        indices: Their indices in the train split (sorted).
        batch_size: Labelled examples per batch.
    """
    indices: tuple[int, ...]
    batch_size: int


def labelled_subset(config, dataset: data_lib.Dataset,
                    classes: int) -> LabelledSubset:
    """`config.labelled_examples` training examples, as balanced over the
    classes as the count allows (the first classes take the remainder),
    chosen by `config.seed`.

    Raises:
        data.DatasetError: More examples asked for than exist, in all or in
            one class, or a batch larger than the subset.
    """
    labels, n = dataset.labels["train"], config.labelled_examples
    if n > len(labels):
        raise data_lib.DatasetError(
            f"--labelled_examples={n} is more than the {len(labels)} training "
            f"examples of {dataset.name}; lower it.")
    if config.labelled_batch_size > n:
        raise data_lib.DatasetError(
            f"--labelled_batch_size={config.labelled_batch_size} is larger "
            f"than --labelled_examples={n}; lower it.")
    rng = np.random.default_rng([config.seed, 7])
    chosen = []
    for c in range(classes):
        quota = n // classes + (c < n % classes)
        members = np.flatnonzero(labels == c)
        if len(members) < quota:
            raise data_lib.DatasetError(
                f"--labelled_examples={n} needs {quota} examples of class {c}, "
                f"and the training split has {len(members)}; lower it.")
        chosen += rng.choice(members, quota, replace=False).tolist()
    return LabelledSubset(tuple(sorted(int(i) for i in chosen)),
                          config.labelled_batch_size)


def train_batches(dataset: data_lib.Dataset, batch_size: int, *, seed: int,
                  fields=("x",), initial_epoch: int = 0,
                  labelled: LabelledSubset | None = None) -> tf.data.Dataset:
    """The training pipeline (`data.make_train_dataset`) as batches of
    `{field: tensor}`, one shuffled epoch per iteration.

    Fields: "x", "labels" (the batch's labels), "labelled" (a 0/1 mask):
    with "labelled", a batch holds `batch_size` examples of the whole train
    split without their labels, then `labelled.batch_size` labelled
    examples, drawn epoch after epoch from the labelled subset (its own
    order, seeded by seed + 1), positioned as an uninterrupted run would
    have them at `initial_epoch`.
    """
    def pipeline(ds, size, with_labels, epoch, pipeline_seed=seed):
        return data_lib.make_train_dataset(
            ds, size, seed=pipeline_seed, binarize=dataset.binarize,
            initial_epoch=epoch, with_labels=with_labels)

    if "labelled" not in fields:
        with_labels = "labels" in fields
        batches = pipeline(dataset, batch_size, with_labels, initial_epoch)
        return batches.map(lambda *b: dict(zip(("x", "labels"), b)))
    unlabelled = pipeline(dataset, batch_size, False, initial_epoch)
    subset = _subset(dataset, labelled.indices)
    per_epoch = len(labelled.indices) // labelled.batch_size
    start = initial_epoch * (len(dataset.splits["train"]) // batch_size)
    epoch, skip = divmod(start, per_epoch)
    given = pipeline(subset, labelled.batch_size, True, epoch,
                     seed + 1).repeat().skip(skip)

    def join(x, labelled_batch):
        xl, yl = labelled_batch
        return {"x": tf.concat([x, xl], 0),
                "labels": tf.concat([tf.zeros([tf.shape(x)[0]], tf.int32),
                                     yl], 0),
                "labelled": tf.concat([tf.zeros([tf.shape(x)[0]], tf.int32),
                                       tf.ones_like(yl)], 0)}

    return tf.data.Dataset.zip((unlabelled, given)).map(join)


def _subset(dataset: data_lib.Dataset, indices) -> data_lib.Dataset:
    """A dataset whose train split is `dataset`'s examples at `indices`."""
    index = np.asarray(indices)
    return dataclasses.replace(
        dataset, splits={"train": dataset.splits["train"][index]},
        labels={"train": dataset.labels["train"][index]})


def eval_arrays(dataset: data_lib.Dataset, split: str | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The examples and labels (None when absent) of a held-out split."""
    split = split or dataset.eval_split
    return dataset.splits[split], dataset.labels.get(split)
