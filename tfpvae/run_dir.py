"""Everything a run directory holds, and how a trained model comes back.

    <model_dir>/model_config.json   the model's get_config() (written once)
    <model_dir>/checkpoints/        tf.train.CheckpointManager checkpoints of
                                    model, optimizer(s), objective, step and
                                    training seconds so far
    <model_dir>/best/               the model at its best held-out bound so far
                                    (selection by validation), model only
    <model_dir>/flags.txt           the run's settings, usable as --flagfile
    <model_dir>/flags.json          the same as JSON, plus model_dir
    <model_dir>/history.jsonl       one JSON object per evaluation
    <model_dir>/metrics.json        the final evaluation and the run's facts
    <model_dir>/evaluation.json     what `python -m tfpvae.evaluate` wrote
    <model_dir>/labelled_examples.json  (--semi_supervised) the indices of
                                    the labelled training examples
    <model_dir>/tensorboard/        TensorBoard event files (train/, eval/)
    <model_dir>/plots/              the figures
    <model_dir>/saved_model/        the exported SavedModel

This module owns every one of these names. Files are replaced atomically
(a temporary file, then a rename), so a run killed at any moment leaves
either the old or the new content. `load(model_dir)` rebuilds the model
from its configuration (any registered family, `tfpvae.models`) and
restores a checkpoint's model variables (the optimizer state is not needed
for inference and is skipped).

Damage. A checkpoint is verified before it is restored: every tensor is
read back, so a truncated file (a copy cut short, a disk that filled up)
fails on its size and a corrupted one on the CRC32C checksum TensorFlow
stores per tensor (`checkpoint_damage`). Training and `load` take the
newest intact checkpoint, with one warning line naming the damaged file
(`find_checkpoint`); when none is intact they stop with `CheckpointError`,
one line saying what to do. A write that fails for lack of space or
permission is reported as `StorageError` by the trainer
(`storage_problem` recognises one); a checkpoint save cut short leaves a
`ckpt-N_temp` folder, which the next session removes
(`remove_unfinished_saves`).

One trainer at a time. The training process holds a lock on the directory
(`RunLock`) from before it touches anything there until it ends; a second
one started on the same directory (the same command run twice) stops with
`ModelDirError` instead of removing the first one's saves in progress.
Evaluating, plotting or exporting a run while it trains needs no lock.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import signal
import sys
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
LABELLED_FILE = "labelled_examples.json"
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


class CheckpointError(ValueError):
    """The checkpoint needed is damaged, and no intact one can replace it."""


class StorageError(RuntimeError):
    """A file of the run could not be written (no space, no permission);
    the message names what was being written and the last good checkpoint."""


#: What an OSError's errno, or a TensorFlow error's message, says went wrong
#: with the storage.
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device",
                   errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system",
                   errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied"}
_STORAGE_MESSAGES = ("no space left on device", "disk quota exceeded",
                     "read-only file system", "permission denied")


def storage_problem(error: BaseException) -> str | None:
    """What went wrong with the storage, if `error` says a write failed for
    lack of space or permission (an OSError, or a TensorFlow error such as
    ResourceExhaustedError from a checkpoint save); None for other errors.
    """
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        return _STORAGE_ERRNOS[error.errno]
    if isinstance(error, (OSError, tf.errors.OpError)):
        text = str(error).lower()
        for reason in _STORAGE_MESSAGES:
            if reason in text:
                return reason
    return None


@contextlib.contextmanager
def one_line_errors(program: str, interrupted: str):
    """The failures of a command other than training (`tfpvae.evaluate`,
    `tfpvae.plot`) as one line on stderr and a non-zero exit: bad input
    (FileNotFoundError, ValueError) and a write refused for lack of space
    or permission (exit 1), and Ctrl-C (exit 130, `interrupted` saying
    what was kept). Other errors keep their traceback."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{program}: stopped; {interrupted}", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (FileNotFoundError, ValueError) as e:  # DatasetError: a ValueError.
        sys.exit(f"{program}: error: " + " ".join(str(e).split()))
    except (OSError, tf.errors.OpError) as e:
        problem = storage_problem(e)
        if problem is None:
            raise
        sys.exit(f"{program}: error: "
                 f"{storage_advice(problem, getattr(e, 'filename', None))}.")


def storage_advice(problem: str, where: str | None) -> str:
    """The sentence of a refused write (`storage_problem`) on the command
    line: the problem, the file or directory, and what to do."""
    return (problem + (f" ({where})" if where else "")
            + "; free some space or make it writable, then run the same "
            "command again")


# --------------------------------------------------------------------------
# Atomic files.

def _new_file_mode(path: str) -> int:
    """The permissions `path` keeps when it is replaced: its own, or those
    of a new file under the process's umask (a temporary file is created
    private, 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:  # Linux: the umask, read without changing it (os.umask sets it).
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file and a rename: `path`
    holds its old content or the new one, never part of it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to `path` via a temporary file and a rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


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


def missing_model_dir(model_dir: str, flag: str = "--model_dir") -> str:
    """The error for a model directory that does not exist: the trained runs
    beside it (newest first), or how to train one there.

    E.g. offline, the quickstart trains in runs/mnist_bundled, and
    `--model_dir=runs/mnist` is then answered with that directory."""
    parent = os.path.dirname(os.path.normpath(model_dir))
    try:
        with os.scandir(parent or os.curdir) as entries:
            runs = [(entry.stat().st_mtime, os.path.join(parent, entry.name))
                    for entry in entries if entry.is_dir() and os.path.isfile(
                        os.path.join(entry.path, MODEL_CONFIG_FILE))]
    except OSError:
        runs = []
    message = f"{flag}={model_dir} does not exist"
    if not runs:
        return (f"{message}; train a model there first with `python -m "
                f"tfpvae.main --model_dir={model_dir}`.")
    names = [name for _, name in sorted(runs, reverse=True)]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (f"{message}; the trained runs beside it are "
            f"{', '.join(names[:5])}{more} (newest first).")


def read_model_config(model_dir: str) -> dict:
    """Reads the model configuration saved in `model_dir`."""
    config_path = path(model_dir, MODEL_CONFIG_FILE)
    if not os.path.exists(config_path):
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(missing_model_dir(model_dir, "model_dir"))
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


class RunLock:
    """The training process's hold on a model directory: an exclusive
    `fcntl.flock` on the directory itself (nothing is written into it). The
    operating system releases it when the process ends, however it ends, so
    a killed run leaves no stale lock. With `enabled=False`, or on systems
    without fcntl (Windows), it does nothing.

    Raises:
        ModelDirError: Another process holds the directory: a second session
            would remove the first one's unfinished checkpoint saves and
            interleave its records.
    """

    def __init__(self, model_dir: str, enabled: bool = True):
        self.fd = None
        try:
            import fcntl  # pylint: disable=import-outside-toplevel
        except ImportError:
            return
        if not enabled:
            return
        os.makedirs(model_dir, exist_ok=True)
        fd = os.open(model_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ModelDirError(
                f"--model_dir={model_dir} is in use by another training "
                f"process; wait for it to end or stop it (it resumes from "
                f"its checkpoint), or pass another --model_dir.") from None
        self.fd = fd

    def release(self) -> None:
        """Lets another process train in the directory (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)  # Closing the descriptor releases the flock.
            self.fd = None


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


def list_checkpoints(directory: str) -> list[str]:
    """The checkpoint prefixes saved in `directory`, newest first.

    They are those of the directory's `checkpoint` file (what
    tf.train.CheckpointManager completed), or, when that file is missing
    or unreadable, every `ckpt-N.index` there.
    """
    if not os.path.isdir(directory):
        return []
    state = tf.train.get_checkpoint_state(directory)
    names = list(state.all_model_checkpoint_paths) if state else []
    if state and state.model_checkpoint_path:
        names.append(state.model_checkpoint_path)
    if not names:
        names = [name[:-len(".index")] for name in os.listdir(directory)
                 if re.fullmatch(r"ckpt-\d+\.index", name)]
    # Relative to the directory, wherever it was when they were saved.
    prefixes = {os.path.join(directory, os.path.basename(name))
                for name in names}
    return sorted(prefixes, key=checkpoint_number, reverse=True)


def checkpoint_objects(prefix: str) -> set[str]:
    """The names of the objects a checkpoint holds ("model", "optimizer",
    "step", ...: the keyword arguments of its `make_checkpoint`)."""
    return {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)}


def checkpoint_number(prefix: str) -> int:
    """The N of a checkpoint prefix ".../ckpt-N" (-1 for another name)."""
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def checkpoint_damage(prefix: str) -> str | None:
    """Reads every tensor of the checkpoint `prefix` back.

    A truncated file fails on its size, a corrupted one on the CRC32C
    checksum stored for every tensor, a damaged index on its own checks.

    Returns:
        None when the checkpoint is intact; otherwise "FILE: what is wrong",
        FILE being the name of the damaged (or missing) file.
    """
    index = f"{prefix}.index"
    if not os.path.exists(index):
        return f"{os.path.basename(index)}: missing"
    data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # pylint: disable=broad-except
        return f"{_damaged_file(e, prefix, [index] + data)}: {_reason(e, prefix)}"
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except
        return (f"{_damaged_file(e, prefix, data or [index])}: "
                f"{_reason(e, prefix)}")
    return None


def _damaged_file(error: Exception, prefix: str, candidates: list[str]) -> str:
    """The file an error of reading `prefix` is about: the one it names,
    the data shard it names, or else the first of `candidates`."""
    text = str(error)
    named = [path for path in candidates if path in text]
    shard = re.search(r"shard (\d+)", text)
    if not named and shard:
        named = [path for path in candidates
                 if re.search(rf"\.data-0*{shard.group(1)}-of-", path)]
    return os.path.basename((named or candidates)[0])


def _reason(error: Exception, prefix: str) -> str:
    """The first line of an error, without the checkpoint's directory."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = text.replace(os.path.dirname(prefix) + os.sep, "")
    return text[:200]


def find_checkpoint(directory: str, fallback: str | None = None) -> str | None:
    """The newest intact checkpoint of `directory` (then of `fallback`).

    Damaged checkpoints are skipped with one warning line that names the
    damaged files and the checkpoint used instead.

    Args:
        directory: A checkpoint directory (`checkpoint_dir`,
            `best_checkpoint_dir`).
        fallback: Another directory to take a checkpoint from when every
            checkpoint of `directory` is damaged (not when it has none).

    Returns:
        The checkpoint prefix, or None when `directory` has no checkpoint.

    Raises:
        CheckpointError: Checkpoints exist but none is intact.
    """
    damaged = []
    chosen = None
    for prefix in list_checkpoints(directory):
        problem = checkpoint_damage(prefix)
        if problem is None:
            chosen = prefix
            break
        damaged.append(problem)
    if chosen is None and damaged and fallback is not None:
        chosen = next((p for p in list_checkpoints(fallback)
                       if checkpoint_damage(p) is None), None)
    if damaged and chosen is None:
        raise CheckpointError(
            f"no intact checkpoint in {directory} ({'; '.join(damaged)}); "
            f"move {directory} aside (or restore its files from a backup) "
            f"and run again: training then starts over from step 0.")
    if damaged:
        logging.warning("Damaged checkpoint in %s (%s); using %s, the newest "
                        "intact checkpoint, instead.", directory,
                        "; ".join(damaged), chosen)
    return chosen


def remove_unfinished_saves(directory: str) -> None:
    """Removes the `ckpt-N_temp` folders of checkpoint saves that did not
    finish (a killed process, a full disk); the saved checkpoints stay."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if re.fullmatch(r"ckpt-\d+_temp", name) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            logging.info("Removed %s, left by a checkpoint save that did not "
                         "finish.", path)


def load(model_dir: str, checkpoint: str | None = None, best: bool = False):
    """Returns the trained model saved in `model_dir`.

    The checkpoint is verified first (`checkpoint_damage`): without an
    explicit `checkpoint`, a damaged one is skipped for the newest intact
    one (one warning line names the damaged file); with `best`, when every
    checkpoint of best/ is damaged, the latest intact checkpoint of the run
    is loaded instead.

    Args:
        model_dir: A directory written by `python -m tfpvae.main`.
        checkpoint: A specific checkpoint prefix; default the latest intact
            one.
        best: Load the checkpoint with the best held-out bound instead of
            the latest one.

    Raises:
        FileNotFoundError: no configuration or no checkpoint in `model_dir`.
        CheckpointError: `checkpoint` is damaged, or no checkpoint is intact.
    """
    model = models.from_config(read_model_config(model_dir))
    directory = best_checkpoint_dir(model_dir) if best else checkpoint_dir(model_dir)
    if checkpoint:
        problem = checkpoint_damage(checkpoint)
        if problem:
            raise CheckpointError(
                f"checkpoint {checkpoint} is damaged ({problem}); load another "
                f"one (without a checkpoint, load takes the newest intact "
                f"one).")
        checkpoint_path = checkpoint
    else:
        checkpoint_path = find_checkpoint(
            directory, fallback=checkpoint_dir(model_dir) if best else None)
    if checkpoint_path is None:
        raise FileNotFoundError(
            f"No checkpoint in {directory!r}; train the model first.")
    make_checkpoint(model).restore(
        checkpoint_path).expect_partial().assert_existing_objects_matched()
    return model
