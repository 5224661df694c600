"""Trained models that ship with tfpvae, loaded by name without training.

    import tfpvae
    tfpvae.pretrained.names()                  # ['conditional_mnist', ...]
    model = tfpvae.load_pretrained("conditional_mnist")
    images = model.sample(10, labels=list(range(10)), mean=True)

Each model is the checkpoint that selection by validation kept in a run of
the results in docs/ (results.md, tutorials.md), copied into the
repository's `pretrained/<name>/` by `tools/ship_pretrained.py` when it is
under `MAX_BYTES`. The folder is a model directory like a run's, so
`tfpvae.load("pretrained/<name>")`, `python -m tfpvae.evaluate
--model_dir=pretrained/<name>` and `python -m tfpvae.plot` read it too:

    pretrained/<name>/model_config.json   the model (tfpvae.models.from_config)
    pretrained/<name>/checkpoints/        the selected checkpoint, model only
    pretrained/<name>/flags.txt           the run's settings (data included)
    pretrained/<name>/flags.json          the same as JSON (evaluate's data)
    pretrained/<name>/pretrained.json     `INFO_FILE`: the command that
                                          trained it, the source run, the
                                          step and epoch, the date, the
                                          evaluation the docs report (the
                                          run's evaluation.json) and the
                                          document that reports it

The models live in the git checkout, not in the installed package: the
folder is found next to the package (an editable install or a checkout on
the path), or where the environment variable `TFPVAE_PRETRAINED` points.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import tensorflow as tf

from tfpvae import run_dir

ENVIRONMENT_VARIABLE = "TFPVAE_PRETRAINED"
INFO_FILE = "pretrained.json"
#: The largest model that ships in the repository (the checkpoint's files).
MAX_BYTES = 10 * 1024 * 1024
#: Files of the source run copied beside the checkpoint when they exist.
_RUN_FILES = (run_dir.MODEL_CONFIG_FILE, run_dir.FLAGS_TXT_FILE,
              run_dir.FLAGS_JSON_FILE, run_dir.LABELLED_FILE)
#: Per-unit lists of the evaluation left out of pretrained.json.
_EVALUATION_LISTS = ("posterior_mean_variances",)


class PretrainedError(ValueError):
    """A pretrained model cannot be found or shipped; the message says why
    and what to do."""


def directory() -> Path:
    """The folder of the shipped models: `$TFPVAE_PRETRAINED`, else the
    repository's `pretrained/` beside the package."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "pretrained"


def names() -> list[str]:
    """The names of the shipped models, sorted."""
    root = directory()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / INFO_FILE).is_file())


def path(name: str) -> str:
    """The model directory of the shipped model `name`.

    Raises:
        PretrainedError: no shipped model has that name.
    """
    candidate = directory() / name
    if (candidate / INFO_FILE).is_file():
        return str(candidate)
    shipped = ", ".join(names()) or "none"
    raise PretrainedError(
        f"no pretrained model {name!r} in {directory()} (shipped: {shipped}); "
        f"use one of those names, or set {ENVIRONMENT_VARIABLE} to the "
        f"pretrained/ folder of a tfpvae git checkout.")


def info(name: str) -> dict:
    """The `pretrained.json` of the shipped model `name`: how it was
    trained and where its figures are reported."""
    return run_dir.read_json(os.path.join(path(name), INFO_FILE))


def load(name: str):
    """The shipped model `name`, restored from its checkpoint (no training,
    no network access). Raises `PretrainedError` for an unknown name."""
    return run_dir.load(path(name))


def checkpoint_bytes(prefix: str) -> int:
    """The size of a checkpoint's files (its index and data shards)."""
    folder, stem = os.path.split(prefix)
    return sum(os.path.getsize(os.path.join(folder, f))
               for f in os.listdir(folder) if f.startswith(stem + "."))


def ship(model_dir: str, destination: str, *, command: str,
         reported_in: str, description: str,
         max_bytes: int = MAX_BYTES) -> dict:
    """Copies the checkpoint of `model_dir` selected by validation (best/)
    with the run's configuration into `destination` (pretrained/<name>).

    Args:
        model_dir: A run directory of `python -m tfpvae.main` with best/
            and the evaluation.json of `python -m tfpvae.evaluate --best`
            (the figures the docs report).
        destination: The new folder; it must not exist yet.
        command: The command that trained the run, from the repository
            root.
        reported_in: The document that reports the model's figures, e.g.
            "docs/results.md".
        description: One line on what the model is.
        max_bytes: Refuse a checkpoint larger than this.

    Returns:
        The pretrained.json written.

    Raises:
        PretrainedError: no intact best checkpoint, no evaluation of it, a
            checkpoint larger than `max_bytes`, or `destination` exists
            already.
    """
    best = run_dir.find_checkpoint(run_dir.best_checkpoint_dir(model_dir))
    if best is None:
        raise PretrainedError(
            f"{model_dir} has no intact checkpoint in best/; train it with "
            f"held-out evaluation (--eval_every) first.")
    size = checkpoint_bytes(best)
    if size > max_bytes:
        raise PretrainedError(
            f"the checkpoint {best} has {size / 2**20:.1f} MB, more than the "
            f"{max_bytes / 2**20:.0f} MB that ship in the repository; "
            f"publish it elsewhere.")
    if os.path.exists(destination):
        raise PretrainedError(
            f"{destination} exists; remove it first to ship the model again.")
    evaluation_file = run_dir.path(model_dir, run_dir.EVALUATION_FILE)
    evaluation = (run_dir.read_json(evaluation_file)
                  if os.path.exists(evaluation_file) else {})
    if os.path.realpath(evaluation.get("checkpoint", "")) != os.path.realpath(best):
        raise PretrainedError(
            f"{model_dir} has no evaluation of {best}; run `python -m "
            f"tfpvae.evaluate --model_dir={model_dir} --best` first.")
    step = run_dir.checkpoint_number(best)
    epochs = [h.get("epoch") for h in run_dir.read_history(model_dir)
              if h.get("step") == step]
    staging = destination + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    # Restored and saved again (model only, under its step): what ships is
    # known to load, with the checkpoint state file CheckpointManager writes.
    model = run_dir.load(model_dir, checkpoint=best)
    tf.train.CheckpointManager(
        run_dir.make_checkpoint(model),
        os.path.join(staging, run_dir.CHECKPOINT_SUBDIR),
        max_to_keep=1).save(checkpoint_number=step)
    for name in _RUN_FILES:
        source = os.path.join(model_dir, name)
        if os.path.exists(source):
            shutil.copy2(source, staging)
    record = {"name": os.path.basename(os.path.normpath(destination)),
              "description": description, "command": command,
              "source_run": model_dir, "step": step,
              "epoch": epochs[0] if epochs else None,
              "reported_in": reported_in, "checkpoint_bytes": size,
              "evaluation": {k: v for k, v in evaluation.items()
                             if k not in _EVALUATION_LISTS},
              "shipped": datetime.date.today().isoformat()}
    run_dir.write_json_atomic(os.path.join(staging, INFO_FILE), record)
    os.rename(staging, destination)
    return record
