"""The benchmark: its command line, and that its hand-written baseline is the
same model as the package's (same loss, same update). No timing assertions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from absl import flags
from absl import logging

import tfpvae
from tfpvae import config as config_lib
from tfpvae import train
from tfpvae.config import TrainConfig

import benchmark
from conftest import REPO, cli_env

BENCHMARK = REPO / "tools" / "benchmark.py"

#: Small versions of the benchmarked models: the same layers, fewer units.
SMALL = {"mlp": dict(hidden_units=(32, 24)),
         "conv": dict(conv_filters=(4, 8), hidden_units=(16,)),
         "iaf": dict(hidden_units=(32, 24), flow_hidden_units=(24, 24)),
         "iwae": dict(hidden_units=(32, 24), n_samples=4)}


def binary_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28, 28, 1)) < 0.3).astype(np.float32)


def small_config(name, **overrides):
    config = benchmark.model_config(name, batch_size=16,
                                    mixed_precision="none")
    return config.replace(**{**SMALL[name], **overrides})


@pytest.mark.parametrize("name, jit_compile", [
    ("mlp", False), ("mlp", True), ("conv", False), ("iaf", False),
    ("iwae", False), ("mlp_bfloat16", False),
])
def test_baseline_computes_the_package_loss_and_update(name, jit_compile):
    model_name, _, precision = name.partition("_")
    # SGD makes the update the gradient itself, so comparing the weights
    # after each step compares the gradients.
    config = small_config(
        model_name, optimizer="sgd", learning_rate=0.05,
        mixed_precision=f"mixed_{precision}" if precision else "none",
        jit_compile=jit_compile)
    model, _, package_step = benchmark.build_package(config, (28, 28, 1))
    for gate in getattr(model.flow, "gates", []):
        gate.assign([0.7, -0.4])  # Flow layers that are not the identity.
    baseline, baseline_step = benchmark.build_baseline(config, model,
                                                       jit_compile)
    initial = [v.numpy() for v in baseline.trainable_variables]
    # bfloat16 keeps 8 bits of mantissa: the two sides round differently.
    rtol = 1e-3 if precision else 1e-5
    x = tf.constant(binary_images(16))
    for step in range(2):
        t = tf.constant(step, tf.int64)
        package_sums = package_step(x, t, tf.constant(1.0)).numpy()
        baseline_sums = baseline_step(x, t).numpy()
        np.testing.assert_allclose(baseline_sums, package_sums, rtol=rtol,
                                   atol=1e-3)
    # The two updates of every weight agree.
    mine = [v.numpy() for v in baseline.trainable_variables]
    baseline.assign_from(model)
    for start, updated, package in zip(initial, mine,
                                       baseline.trainable_variables):
        ours, theirs = updated - start, package.numpy() - start
        assert np.linalg.norm(ours - theirs) <= (
            100 * rtol * np.linalg.norm(theirs) + 1e-7), package.name


def test_baseline_is_not_fooled_by_other_weights():
    config = small_config("mlp", optimizer="sgd")
    model, _, package_step = benchmark.build_package(config, (28, 28, 1))
    _, baseline_step = benchmark.build_baseline(config, model, False)
    model.decoder.trainable_weights[-1].assign_add(tf.fill([784], 0.5))
    x = tf.constant(binary_images(16))
    t = tf.constant(0, tf.int64)
    assert not np.allclose(package_step(x, t, tf.constant(1.0)).numpy(),
                           baseline_step(x, t).numpy(), rtol=1e-3)


@pytest.mark.parametrize("latent_dim, hidden_units", [
    (5, (7, 3)), (20, (256, 256)), (2, (8,)), (1, (4,))])
def test_made_masks_are_autoregressive(latent_dim, hidden_units):
    masks = benchmark.made_masks(latent_dim, hidden_units, params=2)
    reach = masks[0]
    for mask in masks[1:]:
        reach = (reach @ mask > 0).astype(np.float32)
    # Output d (columns 2d, 2d + 1) depends on the inputs before d only,
    # and on all of them when every hidden layer has latent_dim - 1 units.
    full = min(hidden_units) >= latent_dim - 1
    for d in range(latent_dim):
        for column in (2 * d, 2 * d + 1):
            earlier = np.arange(latent_dim) < d
            assert not np.any(reach[~earlier, column])
            if full:
                assert np.all(reach[earlier, column])


def test_assign_from_refuses_another_model():
    config = small_config("mlp")
    model, _, _ = benchmark.build_package(config, (28, 28, 1))
    baseline = benchmark.HandWrittenVAE(config.replace(hidden_units=(8,)),
                                        (28, 28, 1))
    with pytest.raises(ValueError, match="same settings"):
        baseline.assign_from(model)


@pytest.mark.slow
def test_cli_runs_tiny_settings_and_writes_json(tmp_path):
    data = tmp_path / "tiny.npz"
    np.savez(data, train=binary_images(64, seed=1)[..., 0].astype(np.uint8),
             valid=binary_images(16, seed=2)[..., 0].astype(np.uint8))
    output = tmp_path / "results.json"
    # One model: the baselines of the others are checked in-process above.
    command = [sys.executable, str(BENCHMARK), "--models=mlp",
               "--xla=off", "--steps=2", "--blocks=2", "--warmup=1",
               "--batch_size=8", "--eval_k=10", "--eval_batch_size=4",
               "--eval_repeats=1", f"--data={data}", f"--output={output}"]
    result = subprocess.run(command, cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "hand-written" in result.stdout and "load average" in result.stdout

    report = json.loads(output.read_text())
    assert report["command"].startswith("python tools/benchmark.py --models")
    assert set(report["machine"]) >= {"cpu", "cores", "tensorflow"}
    assert len(report["load_before"]) == len(report["load_after"]) == 3
    assert report["settings"]["data"].startswith(str(data))
    assert [(r["model"], r["xla"]) for r in report["training"]] == [
        ("mlp", False)]
    for row in report["training"]:
        assert row["batch_size"] == 8 and row["ratio"] > 0
        assert isinstance(row["auto_xla"], bool)
        for side in ("package", "baseline"):
            assert row[side]["steps"] == 4  # 2 blocks of 2 steps.
            assert row[side]["images_per_sec"] > 0
            ms = row[side]["step_ms"]
            assert 0 < ms["p10"] <= ms["median"] <= ms["p90"]
    assert [r["model"] for r in report["evaluation"]] == ["mlp"]
    for row in report["evaluation"]:
        assert row["k"] == 10 and row["images_per_sec"] > 0
        assert row["while_loop"] and row["traces"] == 1
    pipeline = report["input_pipeline"]
    assert pipeline["model"] == "mlp"
    assert pipeline["xla"] is False  # --xla=off, not what auto would pick.
    assert pipeline["pipeline"]["images_per_sec"] > 0
    assert pipeline["constant"]["images_per_sec"] > 0
    assert pipeline["cli_loop_images_per_sec"] > 0
    assert np.isfinite(pipeline["pipeline_cost"])
    # The CLI's calls of several steps, measured the same way.
    assert pipeline["steps_per_execution"] == 10
    for side in ("pipeline", "constant"):
        assert pipeline["per_call"][side]["images_per_sec"] > 0
    assert np.isfinite(pipeline["per_call_pipeline_cost"])


def test_cli_rejects_an_unknown_model(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--models=mlp,unknown"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
        timeout=120)
    assert result.returncode != 0
    assert "unknown" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# The XLA default: --jit_compile=auto.

@pytest.mark.parametrize("settings, on", [
    (dict(), True),
    (dict(posterior_flow="iaf"), True),
    (dict(architecture="conv"), False),
    (dict(n_samples=10), False),
    (dict(mixed_precision="mixed_bfloat16"), False),
    (dict(mixed_precision="mixed_float16"), True),
], ids=["mlp", "iaf", "conv", "iwae", "bfloat16", "float16"])
def test_auto_xla_follows_the_measurements(settings, on):
    config = TrainConfig(dataset="sklearn_digits", latent_dim=2,
                         hidden_units=(8,), conv_filters=(4,), **settings)
    assert config.jit_compile == "auto"
    model = train.build_model(config, (8, 8, 1))
    assert train.resolve_jit_compile("auto", model, config.n_samples) is on
    for forced in (True, False):
        assert train.resolve_jit_compile(forced, model,
                                         config.n_samples) is forced


@pytest.mark.parametrize("argv, value", [
    ([], "auto"), (["--jit_compile=auto"], "auto"),
    (["--jit_compile=true"], True), (["--jit_compile=False"], False),
    (["--jit_compile=1"], True), (["--jit_compile=no"], False)])
def test_jit_compile_flag_is_true_false_or_auto(argv, value):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["tfpvae", *argv])
    config = config_lib.from_flags(flag_values)
    assert config.jit_compile == value
    assert TrainConfig(jit_compile=str(value).upper()).jit_compile == value
    # The flags of a run (flags.txt) parse back to the same setting.
    again = flags.FlagValues()
    config_lib.define_flags(again)
    again(["tfpvae", *config.to_flags()])
    assert config_lib.from_flags(again) == config


def test_invalid_jit_compile_is_refused():
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError,
                       match="true, false or auto"):
        flag_values(["tfpvae", "--jit_compile=maybe"])
    with pytest.raises(ValueError, match="true, false or auto"):
        TrainConfig(jit_compile="maybe")


class _PyFunctionEncoder(tf.Module):
    """A dense encoder ending in tf.py_function, which XLA cannot compile."""

    def __init__(self, units):
        super().__init__()
        self.dense = tf_keras.layers.Dense(units)

    def __call__(self, x):
        h = self.dense(tf.reshape(x, [tf.shape(x)[0], -1]))
        out = tf.py_function(lambda t: t, [h], tf.float32)
        out.set_shape(h.shape)
        return out


def test_training_step_falls_back_from_xla_with_one_warning(tiny_config,
                                                            monkeypatch):
    config = tiny_config(jit_compile=True)
    model = tfpvae.VAE(latent_dim=2, data_shape=(8, 8, 1),
                       hidden_units=(16,), encoder=_PyFunctionEncoder(4))
    optimizer = train.build_optimizer(config)
    optimizer.build(model.trainable_variables)
    warnings = []
    monkeypatch.setattr(logging, "warning",
                        lambda msg, *args: warnings.append(msg % args))
    step = train.build_train_step(config, model, optimizer, kl="analytic")
    x = tf.constant((np.random.default_rng(0).random((32, 8, 8, 1)) < 0.5)
                    .astype(np.float32))
    for t in range(3):
        sums = step(x, tf.constant(t, tf.int64), tf.constant(1.0))
        assert np.all(np.isfinite(sums.numpy()))
    assert len(warnings) == 1 and "XLA could not compile" in warnings[0]


def test_fast_xla_flags_join_the_users_own(monkeypatch):
    flag = train.FAST_XLA_FLAGS[0]
    name = flag.split("=")[0]
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    train.use_fast_xla_flags()
    train.use_fast_xla_flags()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/x", flag]
    monkeypatch.setenv("XLA_FLAGS", f"{name}=false")
    train.use_fast_xla_flags()
    assert os.environ["XLA_FLAGS"] == f"{name}=false"
    monkeypatch.delenv("XLA_FLAGS")
    train.use_fast_xla_flags()
    assert os.environ["XLA_FLAGS"] == flag
