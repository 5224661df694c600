"""The command line: flags, presets, errors, signals, strategies, export,
and what a new user sees first: the output, the device line, the default
dataset."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import tfpvae
from tfpvae import config as config_lib
from tfpvae import data
from tfpvae import export
from tfpvae import main
from tfpvae import run_dir
from tfpvae import train
from tfpvae.config import TrainConfig

from conftest import FLAGFILES, TINY_FLAGS, cli_command, cli_env


def parse(*argv):
    """Parses argv into fresh flags; returns them."""
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["tfpvae", *argv])
    return flag_values


def read_json(path):
    with open(path) as f:
        return json.load(f)


def wait_for(condition, process, timeout=60.0):
    """Polls `condition()` while `process` runs; fails if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the condition held"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def latest_step(model_dir):
    """The global step of the latest checkpoint in model_dir, or None."""
    latest = tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else None


# --------------------------------------------------------------------------
# Flags, in process.

def test_flag_defaults_are_the_config_defaults():
    assert config_lib.from_flags(parse()) == TrainConfig()


def test_every_config_field_is_a_flag_and_round_trips():
    config = TrainConfig(latent_dim=3, hidden_units=(7, 5), digits=(1, 8),
                         jit_compile=True, standardize=False, label_column="y",
                         posterior_flow="iaf", gaussian_scale="0.5")
    assert config_lib.from_flags(parse(*config.to_flags())) == config


@pytest.mark.parametrize("argv, message", [
    (["--likelihood=poisson"], "<bernoulli|continuous_bernoulli|gaussian>"),
    (["--optimizer=adagrad"], "<adam|rmsprop|sgd>"),
    (["--mixed_precision=fp8"], "none|mixed_bfloat16|mixed_float16>"),
    (["--latent_dim=0"], "--latent_dim must be "),
    (["--hidden_units=64,big"], "comma-separated list of integers"),
    (["--gaussian_scale=-1"], "'learned', 'decoder' or a positive number"),
    (["--validation_fraction=1.5"], "must be in (0, 1)"),
    (["--kl=analytic", "--prior=vamp"], "use --kl=mc"),
    (["--kl=analytic", "--posterior_flow=iaf"], "use --kl=mc"),
    (["--posterior_flow=realnvp", "--latent_dim=1"], "--latent_dim >= 2"),
    (["--epochs=0"], "Set --epochs or --max_steps"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_invalid_flags_are_rejected_while_parsing(argv, message):
    with pytest.raises(flags.IllegalFlagValueError) as error:
        parse(*argv)
    assert message in str(error.value)


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=lambda p: p.name)
def test_preset_parses_and_trains(flagfile, tmp_path):
    flag_values = parse(f"--flagfile={flagfile}")
    preset = config_lib.from_flags(flag_values)
    assert preset.dataset in ("mnist", "binarized_mnist")
    # Data flags after the flagfile override it, as on the command line.
    # (XLA off: compiling the step of a full-size preset is most of a run.)
    flag_values = parse(f"--flagfile={flagfile}", "--dataset=sklearn_digits",
                        "--max_steps=2", "--batch_size=32", "--eval_k=2",
                        "--jit_compile=false")
    config = config_lib.from_flags(flag_values)
    assert config.replace(dataset=preset.dataset, max_steps=preset.max_steps,
                          batch_size=preset.batch_size, eval_k=preset.eval_k,
                          jit_compile=preset.jit_compile) == preset
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["eval_elbo"])


def test_default_model_dir_is_named_after_the_dataset(binarized_mnist):
    assert config_lib.default_model_dir("mnist") == os.path.join("runs", "mnist")
    assert config_lib.default_model_dir("emnist/letters") == os.path.join(
        "runs", "emnist_letters")
    assert config_lib.default_model_dir(str(binarized_mnist)) == os.path.join(
        "runs", "binarized_mnist")


# --------------------------------------------------------------------------
# The real entry point, in subprocesses.

@pytest.mark.slow
def test_cli_trains_exports_and_reloads(run_cli, tmp_path):
    beta_vae = [p for p in FLAGFILES if p.name == "beta_vae.cfg"][0]
    result = run_cli(f"--flagfile={beta_vae}", *TINY_FLAGS, "--max_steps=30",
                     "--export")
    assert result.returncode == 0, result.stderr
    model_dir = tmp_path / "runs" / "sklearn_digits"  # The default --model_dir.
    assert tfpvae.load(str(model_dir)).sample(4).shape == (4, 8, 8, 1)
    metrics = read_json(model_dir / "metrics.json")
    assert metrics["step"] == 30 and metrics["config"]["beta"] == 2.0

    # The SavedModel needs TensorFlow only.
    script = f"""
import sys
import tensorflow as tf
loaded = tf.saved_model.load({str(model_dir / "saved_model")!r})
x = tf.random.uniform([3, 8, 8, 1])
codes = loaded.signatures["encode"](x=x)
assert codes["loc"].shape == codes["scale"].shape == codes["sample"].shape == (3, 2)
decoded = loaded.signatures["decode"](z=codes["loc"])
assert decoded["mean"].shape == (3, 8, 8, 1) and decoded["params"].shape == (3, 8, 8, 1, 1)
drawn = loaded.signatures["sample"](n=tf.constant(5))
assert drawn["images"].shape == drawn["samples"].shape == (5, 8, 8, 1)
assert loaded.encode(x)["loc"].shape == (3, 2)
assert not [m for m in sys.modules if m.startswith(("tfpvae", "tensorflow_probability"))]
print("ok")
"""
    loaded = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                            env=cli_env(), capture_output=True, text=True,
                            timeout=120)
    assert loaded.stdout.strip() == "ok", loaded.stderr

    # flags.txt repeats the run (and names its directory).
    flag_values = parse(f"--flagfile={model_dir / 'flags.txt'}")
    config = config_lib.from_flags(flag_values)
    assert config.to_dict() == read_json(model_dir / "metrics.json")["config"]
    assert flag_values.model_dir == os.path.join("runs", "sklearn_digits")


def test_export_of_a_flow_posterior_keeps_its_base_and_flow(tiny_model,
                                                            tmp_path):
    model = tiny_model(posterior_flow="iaf", flow_layers=2,
                       flow_context_units=3, prior="mixture")
    path = export.export_saved_model(model, str(tmp_path / "saved_model"))
    loaded = tf.saved_model.load(path)
    x = tf.random.stateless_uniform([5, 8, 8, 1], seed=[0, 1])
    codes = loaded.signatures["encode"](x=x)
    base = model.encode(x).distribution
    np.testing.assert_allclose(codes["loc"], base.mean(), rtol=1e-5)
    np.testing.assert_allclose(codes["scale"], base.stddev(), rtol=1e-5)
    z = tf.random.stateless_normal([5, 2], seed=[0, 2])
    np.testing.assert_allclose(loaded.signatures["decode"](z=z)["mean"],
                               model.decode(z).mean(), rtol=1e-5)
    # Exporting again replaces the SavedModel.
    assert export.export_saved_model(model, path) == path
    assert sorted(os.listdir(tmp_path)) == ["saved_model"]


@pytest.mark.parametrize("argv, message", [
    (["--kl=analytic", "--posterior_flow=iaf"], "use --kl=mc"),
    (["--dataset=/nonexistent/data.npz"], "tfpvae: error: "),
    (["--dataset=corrupt.npz"], "tfpvae: error: "),
], ids=["flag", "missing_file", "corrupt_file"])
def test_cli_user_errors_exit_nonzero_with_one_message(argv, message, run_cli,
                                                       tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    result = run_cli(*TINY_FLAGS, *argv)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_nan_loss_exits_with_the_last_good_checkpoint(run_cli, tmp_path):
    result = run_cli(*TINY_FLAGS, "--learning_rate=1e30", "--max_steps=20",
                     "--checkpoint_every=1", "--model_dir=run")
    assert result.returncode == 1
    assert "tfpvae: error: the loss became" in result.stderr
    assert "Traceback" not in result.stderr
    model = tfpvae.load(str(tmp_path / "run"))
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)


@pytest.mark.slow
def test_cli_sigterm_saves_a_checkpoint_then_exits(tmp_path):
    model_dir = str(tmp_path / "run")
    process = subprocess.Popen(
        cli_command(*TINY_FLAGS, "--max_steps=1000000", "--model_dir=run"),
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        # The first checkpoint comes with the evaluation after one epoch.
        wait_for(lambda: latest_step(model_dir) is not None, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    line = [text for text in stderr.splitlines()
            if text.startswith("tfpvae:")][-1]
    step = int(line.split(" at step ")[1].split(";")[0])
    assert line.startswith("tfpvae: interrupted by SIGTERM at step ")
    assert latest_step(model_dir) == step >= 50


# --------------------------------------------------------------------------
# The first minute: quiet output, the device line, the default dataset.

#: A line of TensorFlow's C++ logger (a C++ source file in the prefix).
CPP_LINE = re.compile(r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+\.(cc|h):\d+\]"
                      r"|absl::InitializeLog|cpu_feature_guard|cuda_platform"
                      r"|^To enable the following instructions")


def test_importing_the_package_does_not_import_tensorflow():
    # `python -m tfpvae.main` imports tfpvae first: if that imported
    # TensorFlow, its start-up log and a signal during it would come before
    # main.py can quiet or catch them.
    code = ("import sys, tfpvae; assert 'tensorflow' not in sys.modules; "
            "tfpvae.VAE; assert 'tensorflow' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env(),
                   cwd=str(Path(tfpvae.__file__).parents[1]), timeout=120)


def offline_env(tmp_path, **extra) -> dict:
    """The environment of a machine with no network and no tfds data: the
    download probe goes to a closed local port, the tfds data dir is empty;
    TensorFlow's log level is left to tfpvae."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("tf_cpp_min_log_level", "no_proxy",
                                "https_proxy", "tfpvae_verbose")}
    (tmp_path / "tfds").mkdir(exist_ok=True)
    return {**env, "https_proxy": "http://127.0.0.1:9",
            "TFDS_DATA_DIR": str(tmp_path / "tfds"), **extra}


@pytest.mark.slow
def test_first_run_without_flags_trains_on_the_bundled_digits_quietly(
        tmp_path):
    # Offline, `python -m tfpvae.main --max_steps=5 --plots=false` (here
    # with a small model) trains on the bundled MNIST digits in
    # runs/mnist_bundled, and prints tfpvae's lines only.
    small = ["--hidden_units=16", "--latent_dim=2", "--batch_size=32",
             "--eval_k=2", "--jit_compile=false"]
    quiet = subprocess.Popen(
        cli_command("--max_steps=5", "--plots=false", *small), cwd=tmp_path,
        env=offline_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    (tmp_path / "verbose").mkdir()
    verbose = subprocess.Popen(
        cli_command(*TINY_FLAGS),
        cwd=tmp_path / "verbose", env=offline_env(tmp_path,
                                                  TFPVAE_VERBOSE="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stderr = quiet.communicate(timeout=180)[1]
        verbose_stderr = verbose.communicate(timeout=180)[1]
    finally:
        quiet.kill()
        verbose.kill()
    assert quiet.returncode == 0, stderr
    model_dir = tmp_path / "runs" / "mnist_bundled"
    assert run_dir.read_flags(str(model_dir))["dataset"] == "mnist_bundled"
    assert read_json(model_dir / "metrics.json")["dataset"]["name"] == (
        "mnist_bundled")
    assert len([line for line in stderr.splitlines()
                if "] Default dataset: mnist_bundled" in line]) == 1
    # The last line names the run's directory in the next commands.
    where = os.path.join("runs", "mnist_bundled")
    assert stderr.strip().splitlines()[-1].endswith(
        f"] Next: `python -m tfpvae.evaluate --model_dir={where} --best "
        f"--k=5000` estimates log p(x) with the selected model; `python -m "
        f"tfpvae.plot --model_dir={where}` draws its figures."), stderr
    (device,) = [line for line in stderr.splitlines() if "] Device: " in line]
    gpu = ".+" if tf.config.list_physical_devices("GPU") else (
        r"CPU \(no GPU found\)")
    assert re.search(rf"\] Device: {gpu}; default strategy with 1 "
                     r"replica\(s\); precision float32 "
                     r"\(--mixed_precision=(auto|none)\); XLA off "
                     r"\(--jit_compile=false\)\.$", device), device
    assert verbose.returncode == 0, verbose_stderr
    assert [line for line in verbose_stderr.splitlines()
            if CPP_LINE.search(line)], "TFPVAE_VERBOSE=1 shows the C++ log"

    # Only tfpvae's lines (absl's format names the module) from Python.
    modules = {p.name for p in Path(tfpvae.__file__).parent.rglob("*.py")}
    cpp_lines = [line for line in stderr.splitlines() if CPP_LINE.search(line)]
    for line in set(stderr.splitlines()) - set(cpp_lines):
        source = re.match(r"[IWEF]\d{4} [\d:.]+\s+\d+ (\S+):\d+\] ", line)
        assert (source and source.group(1) in modules
                or line.startswith("tfpvae: ")), line
    assert not cpp_lines


@pytest.mark.parametrize("argv, environ, verbose", [
    ([], {}, False),
    (["--verbosity=1"], {}, True),
    (["--verbosity", "2"], {}, True),
    (["-v", "1"], {}, True),
    (["--v=0"], {}, False),
    (["--verbosity=1", "--verbosity=0"], {}, False),  # The last one counts.
    (["--verbosity=-1"], {}, False),
    (["--", "--verbosity=1"], {}, False),
    (["--max_steps=5"], {"TFPVAE_VERBOSE": "1"}, True),
    ([], {"TFPVAE_VERBOSE": "0"}, False),
])
def test_verbosity_is_read_from_the_command_line_before_the_imports(
        argv, environ, verbose):
    assert main.verbose_requested(["tfpvae.main", *argv], environ) is verbose


def test_cpp_log_lines_are_dropped_from_stderr_and_the_rest_kept(capfd):
    # Lines of TensorFlow 2.21's start-up on a machine without a GPU.
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR",
        "I0000 00:00:1796141743.733656   29512 port.cc:153] oneDNN custom "
        "operations are on.",
        "I0000 00:00:1796141743.734124   29512 cudart_stub.cc:31] Could not "
        "find cuda drivers on your machine, GPU will not be used.",
        "I0000 00:00:1796141743.818686   29512 cpu_feature_guard.cc:227] This "
        "TensorFlow binary is optimized to use available CPU instructions.",
        "To enable the following instructions: AVX2 AVX512F FMA, in other "
        "operations, rebuild TensorFlow with the appropriate compiler flags.",
        "E0000 00:00:1796141751.245820   29512 cuda_platform.cc:52] failed "
        "call to cuInit: INTERNAL: CUDA error",
        "2024-03-01 12:00:00.123456: I tensorflow/core/util/port.cc:113] "
        "oneDNN custom operations are on."]
    kept = ["I1201 16:15:51.346440 140027359447936 loop.py:179] Data: "
            "sklearn_digits",
            "F0000 00:00:1796141751.245820   29512 logging.cc:12] a fatal "
            "error stays",
            "tfpvae: error: something"]
    with main.cpp_log_hidden():
        os.write(2, "".join(line + "\n" for line in noise + kept).encode())
    with main.cpp_log_hidden(enabled=False):
        os.write(2, (noise[1] + "\n").encode())
    assert capfd.readouterr().err.splitlines() == [*kept, noise[1]]


def test_default_dataset_is_resolved_once_before_the_model_dir(monkeypatch,
                                                               tmp_path):
    empty = str(tmp_path / "tfds")  # No tfds data prepared here.
    monkeypatch.setattr(data, "download_host_reachable", lambda *a: False)
    config, model_dir = main.settings(parse(f"--data_dir={empty}"))
    assert config.dataset == "mnist_bundled"
    assert model_dir == os.path.join("runs", "mnist_bundled")
    assert main.settings(parse(f"--data_dir={empty}", "--model_dir=mine"))[
        1] == "mine"
    monkeypatch.setattr(data, "download_host_reachable", lambda *a: True)
    config, model_dir = main.settings(parse(f"--data_dir={empty}"))
    assert (config.dataset, model_dir) == ("mnist", os.path.join("runs",
                                                                 "mnist"))

    # A dataset given is kept: --dataset=mnist means tfds, online or not.
    def probe(*args):
        raise AssertionError("the network was probed for an explicit dataset")
    monkeypatch.setattr(data, "download_host_reachable", probe)
    config, model_dir = main.settings(parse("--dataset=mnist"))
    assert (config.dataset, model_dir) == ("mnist", os.path.join("runs",
                                                                 "mnist"))
