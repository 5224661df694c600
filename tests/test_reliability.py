"""Failures injected into training runs, and what tfpvae does about them.

A process killed at random moments, damaged checkpoints, a full and a
read-only disk, sessions that train nothing (refused, diverging), a
multi-worker run without its cluster, and signals during start-up. The
project's rule: one line on stderr naming the problem and the fix, a
non-zero exit, and nothing already saved damaged. The runs use the tiny
settings of tests/conftest.py (8x8 digits, a 2-D latent space); training is
deterministic on CPU, so a run that was interrupted must end with the
numbers of one that was not.
"""

import glob
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfpvae
from tfpvae import data
from tfpvae import inputs
from tfpvae import main
from tfpvae import run_dir
from tfpvae import train
from tfpvae.config import TrainConfig
from tfpvae.train import devices

from conftest import TINY, cli_command, cli_env
from test_main import (TINY_FLAGS, latest_step,
                       parse, read_json, wait_for)

#: The settings of the runs trained in process: a checkpoint every 5 steps
#: (5 kept), an evaluation every 10; no XLA, so that a CLI session starts
#: fast and its numbers match the in-process reference.
SETTINGS = dict(max_steps=20, checkpoint_every=5, keep_checkpoints=5,
                eval_every=10, jit_compile=False)
CONFIG = TrainConfig(**{**TINY, **SETTINGS})
FLAGS = [*TINY_FLAGS, *[f"--{k}={str(v).lower()}" for k, v in SETTINGS.items()
                        if k != "max_steps"]]
DATA_FILE = "ckpt-20.data-00000-of-00001"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained to step 20 (checkpoints 5 to 20, evaluations at 10 and
    20), and the metrics of the same run trained to step 30 in one go."""
    root = tmp_path_factory.mktemp("trained")
    train.train_and_evaluate(CONFIG, str(root / "run"))
    reference = train.train_and_evaluate(CONFIG.replace(max_steps=30),
                                         str(root / "reference"))
    return root / "run", reference, read_history(root / "reference")


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the run trained to step 20, for this test to damage."""
    return str(shutil.copytree(trained[0], tmp_path / "run"))


def read_history(model_dir):
    return run_dir.read_history(str(model_dir))


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


def truncate(path):
    """As `truncate -s 50% path`."""
    os.truncate(path, os.path.getsize(path) // 2)


def corrupt(path):
    """Flips every byte of the second half of the file (size unchanged)."""
    with open(path, "r+b") as f:
        content = bytearray(f.read())
        half = len(content) // 2
        content[half:] = bytes(b ^ 0xFF for b in content[half:])
        f.seek(0)
        f.write(content)


def warnings_of(caplog):
    """tfpvae's warnings (absl's records; not TensorFlow's own logger)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "absl"]


def tfpvae_lines(stderr):
    """The lines tfpvae itself ends a run with ("tfpvae: ...")."""
    return [line for line in stderr.splitlines() if line.startswith("tfpvae:")]


def failed_session(model_dir, cwd) -> str:
    """Resumes the run to step 30 with the CLI, which must fail the
    project's way (exit 1, no traceback, its one tfpvae line last); that
    line."""
    result = subprocess.run(
        cli_command(*FLAGS, "--max_steps=30", f"--model_dir={model_dir}"),
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert tfpvae_lines(result.stderr) == [result.stderr.splitlines()[-1]]
    return result.stderr.splitlines()[-1]


# --------------------------------------------------------------------------
# 1. Damaged checkpoints.

@pytest.mark.parametrize("damage, file", [
    (truncate, DATA_FILE), (corrupt, DATA_FILE), (truncate, "ckpt-20.index")],
    ids=["truncated_data", "corrupted_data", "truncated_index"])
def test_damaged_newest_checkpoint_is_skipped_with_one_warning(
        damage, file, run, trained, caplog):
    _, reference, reference_history = trained
    damage(os.path.join(run_dir.checkpoint_dir(run), file))
    caplog.set_level(logging.INFO, logger="absl")
    metrics = train.train_and_evaluate(CONFIG.replace(max_steps=30), run)

    (warning,) = warnings_of(caplog)
    assert file in warning and "ckpt-15" in warning
    assert any(m.startswith("Resuming from") and m.endswith("(step 15).")
               for m in (r.getMessage() for r in caplog.records))
    # Steps 16 to 30 trained again from ckpt-15 give the uninterrupted run.
    assert metrics["eval_elbo"] == pytest.approx(reference["eval_elbo"],
                                                 rel=1e-6)
    history = read_history(run)
    assert [r["step"] for r in history] == [10, 20, 30]
    assert [r["eval_elbo"] for r in history] == pytest.approx(
        [r["eval_elbo"] for r in reference_history], rel=1e-6)
    # The damaged checkpoint was saved again, intact.
    saved = run_dir.list_checkpoints(run_dir.checkpoint_dir(run))
    assert [run_dir.checkpoint_number(p) for p in saved] == [30, 25, 20, 15, 10]
    assert all(run_dir.checkpoint_damage(p) is None for p in saved)


def test_every_checkpoint_damaged_is_one_error_and_changes_nothing(run):
    for path in glob.glob(os.path.join(run_dir.checkpoint_dir(run),
                                       "ckpt-*.data-*")):
        truncate(path)
    before = snapshot(run)
    with pytest.raises(ValueError) as error:  # run_dir.CheckpointError
        train.train_and_evaluate(CONFIG.replace(max_steps=30), run)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"no intact checkpoint in "
                              f"{run_dir.checkpoint_dir(run)} (")
    assert DATA_FILE in message and "Read less bytes than requested" in message
    assert "move" in message and "step 0" in message
    assert snapshot(run) == before


def test_load_skips_damaged_checkpoints_of_checkpoints_and_best(run, caplog):
    at_15 = tfpvae.load(run, checkpoint=os.path.join(
        run_dir.checkpoint_dir(run), "ckpt-15"))
    best_prefix = tf.train.latest_checkpoint(run_dir.best_checkpoint_dir(run))
    caplog.set_level(logging.INFO, logger="absl")

    truncate(os.path.join(run_dir.checkpoint_dir(run), DATA_FILE))
    assert_same_weights(tfpvae.load(run), at_15)
    (warning,) = warnings_of(caplog)
    assert DATA_FILE in warning and "ckpt-15" in warning

    # best/ damaged: the latest intact checkpoint of the run, with a warning.
    caplog.clear()
    corrupt(best_prefix + ".data-00000-of-00001")
    assert_same_weights(tfpvae.load(run, best=True), at_15)
    (warning,) = warnings_of(caplog)
    assert (os.path.basename(best_prefix) + ".data-00000-of-00001" in warning
            and run_dir.BEST_SUBDIR in warning)

    # A damaged checkpoint asked for by name is an error naming its file.
    with pytest.raises(run_dir.CheckpointError, match=DATA_FILE):
        tfpvae.load(run, checkpoint=os.path.join(run_dir.checkpoint_dir(run),
                                                 "ckpt-20"))
    for path in glob.glob(os.path.join(run_dir.checkpoint_dir(run),
                                       "ckpt-*.index")):
        truncate(path)
    with pytest.raises(run_dir.CheckpointError, match="no intact checkpoint"):
        tfpvae.load(run, best=True)


def assert_same_weights(a, b, rtol=0.0):
    assert len(a.variables) == len(b.variables)
    for x, y in zip(a.variables, b.variables):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=rtol,
                                   atol=rtol * 1e-1)


# --------------------------------------------------------------------------
# 2. A full disk, a read-only disk.

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs mounted for the test (root only; skipped elsewhere)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
        capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk, leave):
    """Fills `disk` up to `leave` free bytes; returns the filler's path."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - leave))
    return filler


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(
        small_disk, trained, tmp_path):
    _, reference, _ = trained
    model_dir = shutil.copytree(trained[0], small_disk / "run")
    before = snapshot(model_dir)
    filler = fill(small_disk, leave=20_000)  # Room for logs, not a checkpoint.

    line = failed_session(model_dir, tmp_path)
    checkpoints = run_dir.checkpoint_dir(str(model_dir))
    assert line.startswith(
        f"tfpvae: error: no space left on device while saving checkpoint 25 "
        f"in {checkpoints}; the last good checkpoint is 20 ")
    # What was saved is intact; the failed save left nothing behind (the
    # session's TensorBoard files aside).
    after = {k: v for k, v in snapshot(model_dir).items()
             if not k.startswith(run_dir.TENSORBOARD_SUBDIR)}
    assert after == {k: v for k, v in before.items()
                     if not k.startswith(run_dir.TENSORBOARD_SUBDIR)}
    assert run_dir.checkpoint_damage(os.path.join(checkpoints, "ckpt-20")) is None

    # With room again, the next session resumes (and removes the folder a
    # save cut short by a kill would have left), to the uninterrupted result.
    os.remove(filler)
    os.makedirs(os.path.join(checkpoints, "ckpt-22_temp"))
    metrics = train.train_and_evaluate(CONFIG.replace(max_steps=30),
                                       str(model_dir))
    assert metrics["eval_elbo"] == pytest.approx(reference["eval_elbo"],
                                                 rel=1e-6)
    assert not os.path.exists(os.path.join(checkpoints, "ckpt-22_temp"))


def test_read_only_disk_is_one_error_naming_the_last_checkpoint(small_disk,
                                                              trained):
    model_dir = shutil.copytree(trained[0], small_disk / "run")
    before = snapshot(model_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(run_dir.StorageError) as error:
            train.train_and_evaluate(CONFIG.replace(max_steps=30),
                                     str(model_dir))
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"read-only file system while writing "
                                  f"{model_dir}")
        assert (f"the last good checkpoint is 20 (ckpt-20 in "
                f"{run_dir.checkpoint_dir(str(model_dir))})") in message
        assert f"make {model_dir} writable" in message
        with pytest.raises(run_dir.StorageError,
                           match="no checkpoint has been saved yet"):
            train.train_and_evaluate(CONFIG, str(small_disk / "new"))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)],
                       check=True)
    assert snapshot(model_dir) == before


# --------------------------------------------------------------------------
# 3. Sessions that train nothing leave the flags of the run alone.

def test_refused_or_diverging_sessions_leave_the_flags(run):
    flag_files = [os.path.join(run, name) for name in (
        run_dir.FLAGS_TXT_FILE, run_dir.FLAGS_JSON_FILE)]
    before = snapshot_files(flag_files)
    # Another model: refused before anything is written.
    with pytest.raises(train.ModelDirError):
        train.train_and_evaluate(CONFIG.replace(latent_dim=3), run)
    # A learning rate this high diverges at the second step of the session,
    # before its first checkpoint (the end of the epoch, step 50).
    with pytest.raises(train.TrainingDiverged):
        train.train_and_evaluate(
            CONFIG.replace(learning_rate=1e30, max_steps=60,
                           checkpoint_every=0, eval_every=0), run)
    assert snapshot_files(flag_files) == before
    # A session that saves a checkpoint records its settings.
    train.train_and_evaluate(CONFIG.replace(learning_rate=2e-3, max_steps=25),
                             run)
    assert run_dir.read_flags(run)["learning_rate"] == 2e-3


def test_a_second_trainer_on_the_directory_is_refused_untouched(run, trained,
                                                               tmp_path):
    # Another process trains in the directory (here: holds its lock, as the
    # trainer does): the same command started again stops in one line and
    # removes nothing, although the first one's checkpoint saves may be in
    # progress. The lock dies with its process: then the run resumes.
    _, reference, _ = trained
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(600)", run], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # An unfinished save of the first process, which a session of its
        # own would remove.
        os.mkdir(os.path.join(run_dir.checkpoint_dir(run), "ckpt-25_temp"))
        before = snapshot_tree(run)
        assert failed_session(run, tmp_path) == (
            f"tfpvae: error: --model_dir={run} is in use by another training "
            f"process; wait for it to end or stop it (it resumes from its "
            f"checkpoint), or pass another --model_dir.")
        with pytest.raises(train.ModelDirError, match="in use by another"):
            train.train_and_evaluate(CONFIG.replace(max_steps=30), run)
        assert snapshot_tree(run) == before
    finally:
        holder.kill()
        holder.wait()
    metrics = train.train_and_evaluate(CONFIG.replace(max_steps=30), run)
    assert metrics["eval_elbo"] == reference["eval_elbo"]
    assert not os.path.exists(
        os.path.join(run_dir.checkpoint_dir(run), "ckpt-25_temp"))


def snapshot_tree(directory):
    """snapshot() with the directories too (an empty one is a save begun)."""
    return snapshot(directory), sorted(
        os.path.relpath(root, directory) for root, _, _ in os.walk(directory))


def snapshot_files(paths):
    return {path: Path(path).read_bytes() for path in paths}


# --------------------------------------------------------------------------
# 4. --strategy=multi_worker without TF_CONFIG.

def test_multi_worker_without_tf_config_is_refused_before_any_work(
        monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)

    def work(*args, **kwargs):
        raise AssertionError("work was done before the refusal")
    monkeypatch.setattr(data, "resolve_default_source", work)
    monkeypatch.setattr(inputs, "load_data", work)
    # The command line (python -m tfpvae.main prints the line and exits 1).
    with pytest.raises(ValueError) as error:
        main.settings(parse("--strategy=multi_worker"))
    message = str(error.value)
    assert "\n" not in message
    assert "TF_CONFIG" in message and "docs/howto/distributed.md" in message
    # Python.
    with pytest.raises(ValueError, match="TF_CONFIG"):
        train.train_and_evaluate(CONFIG.replace(strategy="multi_worker"),
                                 str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("tf_config, message", [
    ("", "needs the TF_CONFIG environment variable"),
    ("{not json", "is not JSON with a \"cluster\""),
    ('{"task": {"type": "worker", "index": 0}}', "is not JSON with a"),
])
def test_check_strategy_refuses_a_missing_or_unusable_tf_config(tf_config,
                                                                message):
    with pytest.raises(ValueError, match=message):
        devices.check_strategy("multi_worker", {"TF_CONFIG": tf_config})
    devices.check_strategy("multi_worker", {"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["localhost:1"]},
         "task": {"type": "worker", "index": 0}})})
    devices.check_strategy("default", {})


# --------------------------------------------------------------------------
# 5. SIGINT and SIGTERM during start-up.

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_start_up_is_one_line_and_128_plus_signum(signum,
                                                               tmp_path):
    # The flags come from a named pipe: the program blocks reading them,
    # after its imports and before any training, until the test writes.
    flagfile = tmp_path / "flags.cfg"
    os.mkfifo(flagfile)
    process = subprocess.Popen(
        cli_command(f"--flagfile={flagfile}"), cwd=tmp_path, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        writer = open_when_read(flagfile, process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        os.close(writer)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert tfpvae_lines(stderr) == [
        f"tfpvae: interrupted by {signal.Signals(signum).name} during "
        f"start-up, before training began; nothing needed saving. Run the "
        f"same command again to start (or resume) the run."]
    assert not os.path.exists(tmp_path / "runs")


def open_when_read(fifo, process, timeout=120.0):
    """Opens `fifo` for writing once `process` has opened it for reading."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet.
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_while_importing_is_one_line_and_128_plus_signum(signum,
                                                              tmp_path):
    process = subprocess.Popen(cli_command(*TINY_FLAGS), cwd=tmp_path,
                               env=cli_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # Importing TensorFlow takes several seconds.
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert len(tfpvae_lines(stderr)) == 1


#: `python -m tfpvae.main` whose `import tensorflow` gets the signal inside
#: an extension's init, as pybind11 reports it: the handler's SystemExit
#: becomes the cause of "ImportError: initialization failed".
SIGNAL_IN_EXTENSION_INIT = """
import builtins, os, runpy, signal, sys, time
real_import = builtins.__import__

def extension_init(name, *args, **kwargs):
    if name == "tensorflow":
        try:
            os.kill(os.getpid(), {signum})
            time.sleep(10)
        except BaseException as error:
            raise ImportError("initialization failed") from error
    return real_import(name, *args, **kwargs)

builtins.__import__ = extension_init
sys.argv = ["tfpvae.main"]
runpy.run_module("tfpvae.main", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_inside_an_extensions_init_is_one_line_too(signum, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_IN_EXTENSION_INIT.format(
            signum=int(signum))],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 128 + signum, result.stderr
    assert "Traceback" not in result.stderr
    assert tfpvae_lines(result.stderr) == [
        f"tfpvae: interrupted by {signum.name} during start-up, before "
        "training began; nothing needed saving. Run the same command again "
        "to start (or resume) the run."]


def test_files_replaced_whole_keep_the_permissions_of_a_normal_write(
        tmp_path):
    # The temporary file of a write-and-rename is private (0600); the file
    # it becomes has the mode a plain open() would give, or keeps its own.
    umask = os.umask(0o027)
    try:
        new = tmp_path / "evaluation.json"
        run_dir.write_json_atomic(str(new), {"nll": 80.0})
        assert new.stat().st_mode & 0o777 == 0o640
        kept = tmp_path / "samples.png"
        kept.write_bytes(b"old")
        kept.chmod(0o604)
        run_dir.write_bytes_atomic(str(kept), b"new")
        assert kept.stat().st_mode & 0o777 == 0o604
        assert kept.read_bytes() == b"new"
    finally:
        os.umask(umask)


# --------------------------------------------------------------------------
# Killed at random moments.

@pytest.mark.slow
def test_killed_at_random_moments_ends_as_the_uninterrupted_run(tmp_path):
    """kill -9 at random moments after a checkpoint, then the newest
    checkpoint truncated: the run resumes each time from the newest intact
    checkpoint and ends with the history, metrics and checkpoints of a run
    that was never interrupted."""
    rng = random.Random(20261201)
    model_dir = str(tmp_path / "run")
    argv = cli_command(*FLAGS, "--eval_every=25", "--max_steps=200",
                       "--model_dir=run")
    resumed = []
    for _ in range(2):
        start = latest_step(model_dir) or 0
        process = subprocess.Popen(argv, cwd=tmp_path, env=cli_env(),
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (latest_step(model_dir) or 0) > start, process,
                     timeout=120)
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            process.kill()
            stderr = process.communicate()[1]
        assert process.returncode == -signal.SIGKILL, "finished before the kill"
        resumed.append(resumed_step(stderr))
    assert resumed[0] is None and all(resumed[1:])

    newest = sorted(tf.train.get_checkpoint_state(run_dir.checkpoint_dir(
        model_dir)).all_model_checkpoint_paths, key=step_of, reverse=True)
    truncate(newest[0] + ".data-00000-of-00001")
    final = subprocess.run(argv, cwd=tmp_path, env=cli_env(),
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    warnings = [line for line in final.stderr.splitlines()
                if line.startswith("W") and "Damaged checkpoint" in line]
    assert len(warnings) == 1
    assert os.path.basename(newest[0]) + ".data-00000-of-00001" in warnings[0]
    assert resumed_step(final.stderr) == step_of(newest[1])

    reference_dir = str(tmp_path / "reference")
    reference = train.train_and_evaluate(
        CONFIG.replace(eval_every=25, max_steps=200), reference_dir)
    metrics = read_json(os.path.join(model_dir, run_dir.METRICS_FILE))
    for key in ("step", "best_step", "eval_elbo", "eval_iwae",
                "best_eval_iwae"):
        assert metrics[key] == pytest.approx(reference[key], rel=1e-5), key
    history, expected = read_history(model_dir), read_history(reference_dir)
    assert [r["step"] for r in history] == [r["step"] for r in expected]
    assert [r["eval_elbo"] for r in history] == pytest.approx(
        [r["eval_elbo"] for r in expected], rel=1e-5)
    saved = run_dir.list_checkpoints(run_dir.checkpoint_dir(model_dir))
    assert [run_dir.checkpoint_number(p) for p in saved] == [200, 195, 190,
                                                             185, 180]
    assert all(run_dir.checkpoint_damage(p) is None for p in saved)
    best = run_dir.list_checkpoints(run_dir.best_checkpoint_dir(model_dir))
    assert [run_dir.checkpoint_number(p) for p in best] == [metrics["best_step"]]
    for directory in (run_dir.checkpoint_dir(model_dir),
                      run_dir.best_checkpoint_dir(model_dir)):
        assert not [n for n in os.listdir(directory) if n.endswith("_temp")]
    assert_same_weights(tfpvae.load(model_dir), tfpvae.load(reference_dir),
                        rtol=1e-5)


def step_of(prefix):
    """N of a checkpoint prefix .../ckpt-N."""
    return int(prefix.rsplit("-", 1)[1])


def resumed_step(stderr):
    """The step a session says it resumed from, or None."""
    for line in stderr.splitlines():
        if "Resuming from" in line:
            return int(line.rsplit("(step ", 1)[1].split(")")[0])
    return None
