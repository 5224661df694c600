"""Shared fixtures: the real data beside the checkout, tiny configurations and
models, mocked tensorflow_datasets MNIST, and a runner for the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

# The developer tools (tools/benchmark.py, tools/docs_reference.py) are not
# part of the package; the tests import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import tfpvae
from tfpvae import data
from tfpvae.config import TrainConfig

#: Real data kept beside the project checkout (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BINARIZED_MNIST = SHARED_DATA / "binarized_mnist.npz"
MNIST_IDX = SHARED_DATA / "mnist"
REPO = Path(__file__).resolve().parents[1]
FLAGFILES = sorted((REPO / "flags").glob("*.cfg"))

#: Settings that make a run take well under a second: the offline 8x8
#: digits, a 2-D latent space, one 16-unit layer, a few steps, and no XLA
#: (compiling a step costs seconds, more than a tiny run's training; the
#: tests about XLA turn it on, and --jit_compile=auto is tested by the
#: runs without flags).
TINY = dict(dataset="sklearn_digits", latent_dim=2, hidden_units=(16,),
            flow_hidden_units=(8,), batch_size=32, max_steps=4, eval_k=2,
            log_every=1000, checkpoint_every=0, plots=False,
            jit_compile=False)
#: `TINY` as command-line flags.
TINY_FLAGS = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
              for k, v in TINY.items()]


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives beside the checkout "
                    f"in ../shared/data)")
    return path


@pytest.fixture
def binarized_mnist() -> Path:
    """Path of binarized_mnist.npz (train 50000, valid 10000; no labels)."""
    return _require(BINARIZED_MNIST)


@pytest.fixture
def mnist_idx() -> Path:
    """Folder of the labelled MNIST t10k IDX files (10000 grayscale images)."""
    return _require(MNIST_IDX)


@pytest.fixture
def tiny_config():
    """Factory of a tiny `TrainConfig`; keyword arguments override `TINY`."""
    def make(**overrides) -> TrainConfig:
        return TrainConfig(**{**TINY, **overrides})
    return make


@pytest.fixture
def tiny_model():
    """Factory of a tiny `VAE` on 8x8 images; keyword arguments override."""
    def make(**kwargs) -> tfpvae.VAE:
        kwargs = {"latent_dim": 2, "data_shape": (8, 8, 1),
                  "hidden_units": (16,), "flow_hidden_units": (8,), **kwargs}
        return tfpvae.VAE(**kwargs)
    return make


@pytest.fixture
def mock_mnist(tmp_path, monkeypatch):
    """tfds "mnist" served by `tfds.testing.mock_data` (random images).

    The mock needs split sizes in the dataset metadata (without them tfds
    batches the whole split with batch size sys.maxsize, which aborts the
    process), so the fixture writes metadata for 64 train and 64 test
    examples into a tfds data dir; the network probe is told that a
    download would work, which the mock turns into a no-op.
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    examples = 64
    builder = tfds.builder("mnist", data_dir=str(tmp_path / "tfds"))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[examples], num_bytes=0,
                            filename_template=None)
        for split in ("train", "test")]))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=examples,
                                data_dir=str(tmp_path / "tfds")):
        yield examples


def linear_gaussian_vae(w, b, s, sigma, loc_shift=0.0, scale_mult=1.0):
    """The linear-Gaussian model x = W z + b + sigma * eps as a tfpvae VAE.

    Its encoder is the exact posterior N(s (x - b) W / sigma^2, s), with the
    mean shifted by `loc_shift` and the std scaled by `scale_mult` to make
    it inexact; the decoder's mean is W z + b with the fixed scale sigma.
    The tests' closed forms (numpy) are computed beside it.
    """
    w, b = tf.constant(w, tf.float32), tf.constant(b, tf.float32)
    s = tf.constant(s, tf.float32)
    dim, latent = w.shape

    def encoder(x):
        loc = s * tf.matmul(x - b, w) / sigma ** 2 + loc_shift
        scale = tf.sqrt(s) * scale_mult - 1e-5  # The model adds 1e-5.
        raw = tf.math.log(tf.math.expm1(scale))
        return tf.concat([loc, tf.broadcast_to(raw, tf.shape(loc))], axis=-1)

    def decoder(z):
        return tf.reshape(tf.matmul(z, w, transpose_b=True) + b, [-1, dim, 1])

    return tfpvae.VAE(latent_dim=latent, data_shape=(dim,), likelihood="gaussian",
                      gaussian_scale=sigma, encoder=encoder, decoder=decoder)


def cli_command(*args: str) -> list[str]:
    """The command line of `python -m tfpvae.main` with `args`."""
    return [sys.executable, "-m", "tfpvae.main", *args]


def cli_env() -> dict:
    """Environment of CLI subprocesses: quiet TensorFlow C++ logs."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture
def run_cli(tmp_path):
    """Runs `python -m tfpvae.main ARGS` in tmp_path; returns the result."""
    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(cli_command(*args), cwd=tmp_path, env=cli_env(),
                              capture_output=True, text=True, timeout=timeout)
    return run


def exit_code(main):
    """The exit status `main()` ends with (SystemExit's code); a Ctrl-C
    that escapes it fails the test rather than stopping the session."""
    try:
        main()
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped: no one-line exit")
    except SystemExit as stop:
        return stop.code
    pytest.fail("main() returned without exiting")
