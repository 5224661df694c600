"""Everything a run directory holds, and how a trained model comes back.

    <model_dir>/model_config.json   the model's get_config() (written once)
    <model_dir>/checkpoints/        tf.train.CheckpointManager checkpoints of
                                    model, optimizer(s), objective and step
    <model_dir>/best/               the model at its best held-out bound so far
                                    (selection by validation), model only
    <model_dir>/flags.txt           the run's settings, usable as --flagfile
    <model_dir>/flags.json          the same as JSON, plus model_dir
    <model_dir>/history.jsonl       one JSON object per evaluation
    <model_dir>/metrics.json        the final evaluation and the run's facts
    <model_dir>/evaluation.json     what `python -m tfpvae.evaluate` wrote
    <model_dir>/tensorboard/        TensorBoard event files (train/, eval/)
    <model_dir>/plots/              the figures
    <model_dir>/saved_model/        the exported SavedModel

This module owns every one of these names. Files are replaced atomically
(a temporary file, then a rename), so a run killed at any moment leaves
either the old or the new content. `load(model_dir)` rebuilds the model
from its configuration (any registered family, `tfpvae.models`) and
restores a checkpoint's model variables (the optimizer state is not needed
for inference and is skipped).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import tensorflow as tf
from absl import logging

from tfpvae import models

MODEL_CONFIG_FILE = "model_config.json"
CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best"
FLAGS_TXT_FILE = "flags.txt"
FLAGS_JSON_FILE = "flags.json"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
TENSORBOARD_SUBDIR = "tensorboard"
PLOTS_SUBDIR = "plots"
SAVED_MODEL_SUBDIR = "saved_model"

#: Model-config keys that do not change what a checkpoint holds: a run may
#: resume with other values (they are the current run's, not the model's).
RUNTIME_KEYS = ("dtype_policy", "seed")

#: How a model-config key is set on the command line, where it differs.
_SETTING_FLAG = {"data_shape": "dataset", "num_classes": "conditional"}


class ModelDirError(ValueError):
    """The model directory holds something other than this run's model."""


# --------------------------------------------------------------------------
# Atomic files.

def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data) -> None:
    """Writes JSON to `path` via a temporary file and a rename."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True,
                                       default=str) + "\n")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# Paths.

def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def best_checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, BEST_SUBDIR)


def path(model_dir: str, name: str) -> str:
    """The path of one of this module's file names in `model_dir`."""
    return os.path.join(model_dir, name)


# --------------------------------------------------------------------------
# The model configuration.

def save_model_config(model, model_dir: str) -> None:
    """Writes `model.get_config()` to `<model_dir>/model_config.json`."""
    write_json_atomic(path(model_dir, MODEL_CONFIG_FILE), model.get_config())


def read_model_config(model_dir: str) -> dict:
    """Reads the model configuration saved in `model_dir`."""
    config_path = path(model_dir, MODEL_CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{config_path} does not exist: {model_dir!r} is not a tfpvae model "
            f"directory (train one with `python -m tfpvae.main "
            f"--model_dir={model_dir}`).")
    return read_json(config_path)


def _comparable(config: dict) -> dict:
    """A model configuration as the model rebuilt from it reports it, so
    that one written by an earlier version (without the settings added
    since, which default to the earlier behaviour) compares equal."""
    config = json.loads(json.dumps(models.complete_config(config),
                                   default=str))
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS}


def check_model_dir(model_dir: str, model_config: dict) -> bool:
    """Refuses a directory that holds another model or foreign files.

    Args:
        model_dir: The run directory (need not exist).
        model_config: `get_config()` of this run's model.

    Returns:
        Whether the directory already holds this model (a resumable run).

    Raises:
        ModelDirError: one line naming the conflicting settings, or saying
            that the directory is not a tfpvae model directory.
    """
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ModelDirError(f"--model_dir={model_dir} is a file, not a "
                            f"directory.")
    if os.path.exists(path(model_dir, MODEL_CONFIG_FILE)):
        saved = _comparable(read_model_config(model_dir))
        new = _comparable(model_config)
        conflicts = [
            f"{_SETTING_FLAG.get(key, key)}: {_show(saved.get(key))} there, "
            f"{_show(new.get(key))} now"
            for key in sorted(set(saved) | set(new))
            if saved.get(key) != new.get(key)]
        if conflicts:
            raise ModelDirError(
                f"--model_dir={model_dir} holds a different model "
                f"({'; '.join(conflicts)}); pass another --model_dir, or the "
                f"same model flags to resume it.")
        return True
    if os.path.isdir(model_dir) and any(
            not name.startswith(".") for name in os.listdir(model_dir)):
        raise ModelDirError(
            f"--model_dir={model_dir} is not empty and is not a tfpvae model "
            f"directory (no {MODEL_CONFIG_FILE}); choose a new or empty "
            f"directory.")
    return False


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return str(value)


# --------------------------------------------------------------------------
# The run's flags.

def read_flags(model_dir: str) -> dict:
    """The training flags saved in `<model_dir>/flags.json`.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    flags_path = path(model_dir, FLAGS_JSON_FILE)
    if not os.path.exists(flags_path):
        raise FileNotFoundError(f"{flags_path} does not exist; pass --dataset "
                                f"to name the data.")
    return read_json(flags_path)


def write_flags(model_dir: str, config) -> None:
    """Writes flags.txt (a --flagfile) and flags.json for the run.

    When an earlier session of the run used other settings, logs them.

    Args:
        model_dir: The run directory.
        config: The run's `TrainConfig`.
    """
    record = dict(config.to_dict(), model_dir=model_dir)
    json_path = path(model_dir, FLAGS_JSON_FILE)
    if os.path.exists(json_path):
        previous = read_json(json_path)
        changed = [f"--{k}: {_show(previous.get(k))} -> {_show(v)}"
                   for k, v in record.items() if previous.get(k) != v]
        if changed:
            logging.info("Settings changed since the last session: %s",
                         "; ".join(changed))
    write_json_atomic(json_path, record)
    lines = [f"# Settings of the tfpvae run in {model_dir}",
             f"# ({time.strftime('%Y-%m-%d %H:%M:%S')}). Repeat or resume it "
             f"with:",
             f"#   python -m tfpvae.main --flagfile="
             f"{path(model_dir, FLAGS_TXT_FILE)}",
             *config.to_flags(), f"--model_dir={model_dir}"]
    write_text_atomic(path(model_dir, FLAGS_TXT_FILE), "\n".join(lines) + "\n")


# --------------------------------------------------------------------------
# History.

class History:
    """history.jsonl: one JSON object per evaluation, appended line by line."""

    def __init__(self, model_dir: str):
        self.path = path(model_dir, HISTORY_FILE)

    def read(self) -> list[dict]:
        """The records, skipping a torn line of a killed run."""
        if not os.path.exists(self.path):
            return []
        records = []
        with open(self.path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def truncate(self, step: int) -> list[dict]:
        """Drops the records after `step` (a killed run may have evaluated
        after its last checkpoint) and any torn line; returns the rest."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            lines = f.readlines()
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        if len(kept) != len(lines):
            write_text_atomic(self.path,
                              "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_history(model_dir: str) -> list[dict]:
    """The records of `<model_dir>/history.jsonl` (none if absent)."""
    return History(model_dir).read()


# --------------------------------------------------------------------------
# Checkpoints and loading.

def make_checkpoint(model, optimizer=None, step=None,
                    **extra) -> tf.train.Checkpoint:
    """The checkpoint structure every tfpvae model directory uses: the model,
    and for training the optimizer, the step and any `extra` trackables
    (a training objective's networks and their optimizers)."""
    kwargs = {"model": model}
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    if step is not None:
        kwargs["step"] = step
    kwargs.update(extra)
    return tf.train.Checkpoint(**kwargs)


def load(model_dir: str, checkpoint: str | None = None, best: bool = False):
    """Returns the trained model saved in `model_dir`.

    Args:
        model_dir: A directory written by `python -m tfpvae.main`.
        checkpoint: A specific checkpoint prefix; default the latest one.
        best: Load the checkpoint with the best held-out bound instead of
            the latest one.

    Raises:
        FileNotFoundError: no configuration or no checkpoint in `model_dir`.
    """
    model = models.from_config(read_model_config(model_dir))
    directory = best_checkpoint_dir(model_dir) if best else checkpoint_dir(model_dir)
    checkpoint_path = checkpoint or tf.train.latest_checkpoint(directory)
    if checkpoint_path is None:
        raise FileNotFoundError(
            f"No checkpoint in {directory!r}; train the model first.")
    make_checkpoint(model).restore(
        checkpoint_path).expect_partial().assert_existing_objects_matched()
    return model
