"""Tests for the MNIST test set shipped inside tfpvae (``mnist_bundled``) and
for `resolve_default_source`, the trainer's choice between it and tfds MNIST.

The bundled files are package data (tfpvae/data_files/mnist); the comparison
with the same files in ``../shared/data/mnist`` skips when that folder is
absent. The slow test builds and installs a wheel to check that the files
ship with it and load from outside the checkout.
"""

import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfpvae import data
from tfpvae.data import DatasetError, load_dataset, resolve_default_source

REPO = Path(__file__).resolve().parents[1]
BUNDLED = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SHA256 = {
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def _bundled_bytes(name: str) -> bytes:
    return (importlib.resources.files("tfpvae") / "data_files" / "mnist" / name).read_bytes()


def _forbid_probe(*args, **kwargs):
    raise AssertionError("the network must not be probed here")


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def test_bundled_files_match_their_readme():
    readme = (importlib.resources.files("tfpvae") / "data_files" / "mnist"
              / "README.md").read_text()
    for name in BUNDLED:
        blob = _bundled_bytes(name)
        assert hashlib.sha256(blob).hexdigest() == SHA256[name]
        assert SHA256[name] in readme and hashlib.md5(blob).hexdigest() in readme
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme and "Burges" in readme


def test_mnist_bundled_is_labelled_grayscale_split_into_train_valid():
    ds = load_dataset("mnist_bundled", seed=0)
    assert ds.name == "mnist_bundled" and ds.kind == "image"
    assert ds.data_shape == (28, 28, 1) and ds.eval_split == "valid"
    assert {k: v.shape for k, v in ds.splits.items()} == {
        "train": (9000, 28, 28, 1), "valid": (1000, 28, 28, 1)}
    for split, x in ds.splits.items():
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
        # Pixels 0..255 scaled once: grayscale, not binarized.
        np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
        assert ds.labels[split].dtype == np.int64 and len(ds.labels[split]) == len(x)
        assert set(np.unique(ds.labels[split])) == set(range(10))
    assert not ds.is_binary

    other = load_dataset("MNIST_Bundled", seed=1, validation_fraction=0.2)
    assert len(other.splits["valid"]) == 2000
    assert not np.array_equal(other.labels["valid"][:1000], ds.labels["valid"])


def test_mnist_bundled_equals_the_shared_idx_folder(mnist_idx):
    bundled = load_dataset("mnist_bundled", seed=5, digits=[1, 8], binarize="static")
    shared = load_dataset(mnist_idx, seed=5, digits=[1, 8], binarize="static")
    assert bundled.splits.keys() == shared.splits.keys()
    for split in shared.splits:
        np.testing.assert_array_equal(bundled.splits[split], shared.splits[split])
        np.testing.assert_array_equal(bundled.labels[split], shared.labels[split])
    plain = load_dataset("mnist_bundled", seed=5)
    np.testing.assert_array_equal(plain.splits["train"],
                                  load_dataset(mnist_idx, seed=5).splits["train"])


def _copy_bundled(folder: Path) -> Path:
    folder.mkdir()
    for name in BUNDLED:
        (folder / name).write_bytes(_bundled_bytes(name))
    return folder


def test_damaged_bundled_file_is_one_line_error(tmp_path, monkeypatch):
    folder = _copy_bundled(tmp_path / "mnist")
    images = folder / BUNDLED[0]
    blob = bytearray(images.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit; still valid gzip framing
    images.write_bytes(bytes(blob))
    monkeypatch.setattr(data, "_bundled_mnist_dir", lambda: folder)

    with pytest.raises(DatasetError) as info:
        load_dataset("mnist_bundled")
    message = str(info.value)
    assert "\n" not in message
    assert str(images) in message and "damaged" in message
    assert "reinstall tfpvae" in message


def test_missing_bundled_file_is_one_line_error(tmp_path, monkeypatch):
    folder = _copy_bundled(tmp_path / "mnist")
    (folder / BUNDLED[1]).unlink()
    monkeypatch.setattr(data, "_bundled_mnist_dir", lambda: folder)
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist_bundled")
    message = str(info.value)
    assert "\n" not in message
    assert BUNDLED[1] in message and "missing" in message and "reinstall tfpvae" in message


# --------------------------------------------------------------------------
# resolve_default_source
# --------------------------------------------------------------------------

def _info_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.INFO and "Default dataset" in r.getMessage()]


def test_default_is_bundled_offline_with_nothing_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: False)
    data_dir = tmp_path / "tfds"
    with caplog.at_level(logging.INFO, logger="absl"):
        start = time.monotonic()
        assert resolve_default_source(str(data_dir)) == "mnist_bundled"
        assert time.monotonic() - start < 5
    (line,) = _info_lines(caplog)
    assert "mnist_bundled" in line and "\n" not in line
    assert "go online once" in line and "--dataset=mnist" in line
    assert str(data_dir) in line
    assert not data_dir.exists() or not any(data_dir.rglob("*.tfrecord*"))  # no download


def test_default_is_tfds_mnist_when_a_download_would_work(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: True)
    data_dir = tmp_path / "tfds"
    with caplog.at_level(logging.INFO, logger="absl"):
        assert resolve_default_source(str(data_dir)) == "mnist"
    (line,) = _info_lines(caplog)
    assert "mnist" in line and "mnist_bundled" not in line
    assert not data_dir.exists() or not any(data_dir.rglob("*.tfrecord*"))  # no download


def test_default_is_tfds_mnist_when_prepared_without_probing(tmp_path, mock_mnist,
                                                             monkeypatch, caplog):
    # mock_mnist writes mnist's metadata into tmp_path/tfds: prepared there.
    monkeypatch.setattr(data, "download_host_reachable", _forbid_probe)
    data_dir = str(tmp_path / "tfds")
    with caplog.at_level(logging.INFO, logger="absl"):
        source = resolve_default_source(data_dir)
    assert source == "mnist"
    assert "prepared" in _info_lines(caplog)[0]
    # "mnist" still means tensorflow_datasets (the mock), not the bundled copy.
    ds = load_dataset(source, data_dir=data_dir, seed=0)
    assert ds.name == "mnist" and "test" in ds.splits
    assert len(ds.splits["train"]) + len(ds.splits["valid"]) == mock_mnist


# --------------------------------------------------------------------------
# Packaging
# --------------------------------------------------------------------------

def _run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
def test_wheel_ships_bundled_mnist_and_it_loads_when_installed(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline (without "
                        "build isolation) needs setuptools installed")
    # Build from a copy so that the checkout gets no build/ or egg-info.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "runs", ".benchmarks",
        ".pytest_cache"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(wheels)], cwd=source, timeout=120)
    (wheel,) = wheels.glob("tfpvae-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in BUNDLED:
            member = f"tfpvae/data_files/mnist/{name}"
            assert member in names
            assert hashlib.sha256(archive.read(member)).hexdigest() == SHA256[name]
        assert "tfpvae/data_files/mnist/README.md" in names

    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
          "--target", str(target), str(wheel)], timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = ("import json, tfpvae, tfpvae.data as d; "
              "ds = d.load_dataset('mnist_bundled'); "
              "print(json.dumps({'file': tfpvae.__file__, "
              "'n': sum(len(x) for x in ds.splits.values()), "
              "'labelled': all(y is not None for y in ds.labels.values())}))")
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = _run([sys.executable, "-c", script], cwd=elsewhere, env=env, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(target.resolve())
    assert report["n"] == 10000 and report["labelled"]
