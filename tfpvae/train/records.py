"""What a training run records besides checkpoints: the model configuration,
the flags, history.jsonl, TensorBoard events and metrics.json.

TensorBoard (`<model_dir>/tensorboard/`):

    train/   scalars loss, elbo, rate, distortion (and each layer's rate),
             beta, learning_rate, examples_per_sec
    eval/    scalars elbo, rate, distortion, iwae (and each layer's rate);
             images reconstructions, prior_samples; histograms
             posterior_mean/z<d> of the held-out posterior means
    .        the run's settings for the hparams dashboard, so that
             `tensorboard --logdir runs` compares runs by their flags

All are written with `tf.summary.scalar/image/histogram` and tensorboard's
hparams API. In a multi-worker run only the chief writes.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from tfpvae import data as data_lib
from tfpvae import run_dir
from tfpvae.images import image_grid

#: Seed stream of the image summaries: fold (seed, stream).
IMAGE_STREAM = 3

#: Posterior-mean units with a histogram, and examples they are drawn from.
HISTOGRAM_UNITS, HISTOGRAM_EXAMPLES = 16, 1000


class RunFiles:
    """What the chief writes in model_dir besides checkpoints.

    Args:
        model_dir: The run directory.
        enabled: Whether this process writes (it is the chief).
    """

    def __init__(self, model_dir: str, enabled: bool):
        self.model_dir, self.enabled = model_dir, enabled
        self.history = run_dir.History(model_dir)
        self._writers = {}

    def start(self, model, config, resuming: bool, step: int) -> list[dict]:
        """Writes the model configuration of a new run, opens the TensorBoard
        writers and records the run's settings there; returns the history
        records up to `step`."""
        if not self.enabled:
            return []
        os.makedirs(self.model_dir, exist_ok=True)
        if not resuming:
            run_dir.save_model_config(model, self.model_dir)
        root = os.path.join(self.model_dir, run_dir.TENSORBOARD_SUBDIR)
        for name in ("train", "eval"):
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(root, name))
        with tf.summary.create_file_writer(root).as_default():
            hparams_api.hparams(_hparams(config), trial_id=self.model_dir)
        return self.history.truncate(step)

    def write_flags(self, config) -> None:
        """flags.txt and flags.json of the run (`run_dir.write_flags`)."""
        if self.enabled:
            run_dir.write_flags(self.model_dir, config)

    def training_scalars(self, step: int, values: dict) -> None:
        """TensorBoard scalars of the training run (None values skipped)."""
        if self.enabled:
            with self._writers["train"].as_default():
                for name, value in values.items():
                    if value is not None:
                        tf.summary.scalar(name, value, step=step)

    def evaluation(self, record: dict, results: dict, model,
                   dataset: data_lib.Dataset, seed: int) -> None:
        """Appends `record` to history.jsonl; writes the evaluation scalars,
        the image grids and the posterior-mean histograms to TensorBoard."""
        if not self.enabled:
            return
        self.history.append(record)
        step = record["step"]
        with self._writers["eval"].as_default():
            for name, value in results.items():
                if value is not None:
                    tf.summary.scalar(name, value, step=step)
            _write_images(model, dataset, seed, step)
            _write_histograms(model, dataset, step)
        for writer in self._writers.values():
            writer.flush()

    def metrics(self, metrics: dict) -> None:
        if self.enabled:
            run_dir.write_json_atomic(
                run_dir.path(self.model_dir, run_dir.METRICS_FILE), metrics)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _hparams(config) -> dict:
    """The settings as hparams values (bool, int, float or str)."""
    return {name: ",".join(map(str, value)) if isinstance(value, list)
            else value for name, value in config.to_dict().items()}


def _held_out(dataset: data_lib.Dataset, n: int):
    split = dataset.eval_split
    labels = dataset.labels.get(split)
    return (dataset.splits[split][:n],
            None if labels is None else labels[:n])


def _write_images(model, dataset: data_lib.Dataset, seed: int,
                  step: int) -> None:
    """Image summaries: held-out examples over their reconstructions, and
    decoder means of prior samples (image data with 1, 3 or 4 channels)."""
    if dataset.kind != "image" or dataset.data_shape[-1] not in (1, 3, 4):
        return
    x, labels = _held_out(dataset, 32)
    labels = labels if model.num_classes else None
    reconstructions = model.reconstruct(x, seed=[seed, IMAGE_STREAM],
                                        labels=labels).numpy()
    grid = np.concatenate([image_grid(x), image_grid(reconstructions)], axis=0)
    tf.summary.image("reconstructions", np.clip(grid, 0, 1)[None], step=step)
    sample_labels = (np.arange(64) % model.num_classes
                     if model.num_classes else None)
    samples = model.sample(64, seed=[seed, IMAGE_STREAM], mean=True,
                           labels=sample_labels).numpy()
    tf.summary.image("prior_samples", np.clip(image_grid(samples), 0, 1)[None],
                     step=step)


def _write_histograms(model, dataset: data_lib.Dataset, step: int) -> None:
    """One histogram per unit of the held-out posterior means (the first
    `HISTOGRAM_UNITS` units of the top layer)."""
    x, labels = _held_out(dataset, HISTOGRAM_EXAMPLES)
    means = model.posterior_mean(
        x, labels if model.num_classes else None).numpy()
    for unit in range(min(means.shape[1], HISTOGRAM_UNITS)):
        tf.summary.histogram(f"posterior_mean/z{unit}", means[:, unit],
                             step=step)
