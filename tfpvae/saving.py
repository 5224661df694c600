"""What a model directory holds, and how a trained VAE comes back from it.

    <model_dir>/model_config.json   VAE.get_config() (written once, atomically)
    <model_dir>/checkpoints/        tf.train.CheckpointManager checkpoints of
                                    tf.train.Checkpoint(model=, optimizer=, step=)
    <model_dir>/best/               the model at its best held-out bound so far
                                    (selection by validation), model only

`load(model_dir)` rebuilds the VAE from its configuration and restores the
latest checkpoint's model variables (the optimizer state is not needed for
inference and is skipped).
"""

from __future__ import annotations

import json
import os
import tempfile

import tensorflow as tf

from tfpvae.model import VAE

MODEL_CONFIG_FILE = "model_config.json"
CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best"


def write_json_atomic(path: str, data) -> None:
    """Writes JSON to `path` via a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model_config(model: VAE, model_dir: str) -> None:
    """Writes `model.get_config()` to `<model_dir>/model_config.json`."""
    write_json_atomic(os.path.join(model_dir, MODEL_CONFIG_FILE),
                      model.get_config())


def read_model_config(model_dir: str) -> dict:
    """Reads the model configuration saved in `model_dir`."""
    path = os.path.join(model_dir, MODEL_CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist: {model_dir!r} is not a tfpvae model "
            f"directory (train one with `python -m tfpvae.main "
            f"--model_dir={model_dir}`).")
    with open(path) as f:
        return json.load(f)


def make_checkpoint(model: VAE, optimizer=None, step=None) -> tf.train.Checkpoint:
    """The checkpoint structure every tfpvae model directory uses."""
    kwargs = {"model": model}
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    if step is not None:
        kwargs["step"] = step
    return tf.train.Checkpoint(**kwargs)


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def best_checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, BEST_SUBDIR)


def load(model_dir: str, checkpoint: str | None = None,
         best: bool = False) -> VAE:
    """Returns the trained VAE saved in `model_dir`.

    Args:
        model_dir: A directory written by `python -m tfpvae.main`.
        checkpoint: A specific checkpoint prefix; default the latest one.
        best: Load the checkpoint with the best held-out bound instead of
            the latest one.

    Raises:
        FileNotFoundError: no configuration or no checkpoint in `model_dir`.
    """
    model = VAE.from_config(read_model_config(model_dir))
    directory = best_checkpoint_dir(model_dir) if best else checkpoint_dir(model_dir)
    path = checkpoint or tf.train.latest_checkpoint(directory)
    if path is None:
        raise FileNotFoundError(
            f"No checkpoint in {directory!r}; train the model first.")
    make_checkpoint(model).restore(path).expect_partial().assert_existing_objects_matched()
    return model
