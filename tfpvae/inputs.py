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


def train_batches(dataset: data_lib.Dataset, batch_size: int, *, seed: int,
                  fields=("x",), initial_epoch: int = 0) -> tf.data.Dataset:
    """The training pipeline (`data.make_train_dataset`) as batches of
    `{field: tensor}`, one shuffled epoch per iteration."""
    del fields  # Only "x" for now.
    x = data_lib.make_train_dataset(dataset, batch_size, seed=seed,
                                    binarize=dataset.binarize,
                                    initial_epoch=initial_epoch)
    return x.map(lambda xb: {"x": xb})


def eval_arrays(dataset: data_lib.Dataset, split: str | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The examples and labels (None when absent) of a held-out split."""
    split = split or dataset.eval_split
    return dataset.splits[split], dataset.labels.get(split)
