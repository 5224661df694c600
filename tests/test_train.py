"""The training loop, in process: outputs, resume, determinism, safety."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import logging

import tfpvae
from tfpvae import run_dir
from tfpvae import evaluation
from tfpvae import main
from tfpvae import train
from tfpvae.train import loop
from tfpvae.config import TrainConfig

HISTORY_KEYS = {
    "step", "epoch", "elapsed", "wall_time", "train_loss", "train_elbo",
    "train_rate", "train_distortion", "eval_elbo", "eval_rate",
    "eval_distortion", "eval_iwae", "eval_k", "beta", "learning_rate",
    "examples_per_sec"}


def read_history(model_dir):
    with open(os.path.join(model_dir, run_dir.HISTORY_FILE)) as f:
        return [json.loads(line) for line in f]


def read_metrics(model_dir):
    with open(os.path.join(model_dir, run_dir.METRICS_FILE)) as f:
        return json.load(f)


def summary_tags(model_dir, which):
    """{tag: [steps]} of the TensorBoard event files of `which` (train/eval)."""
    tags = {}
    folder = os.path.join(model_dir, run_dir.TENSORBOARD_SUBDIR, which)
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(
                os.path.join(folder, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def snapshot(directory):
    """{relative path: (size, mtime_ns, bytes)} of every file under it."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = (
                    os.stat(path).st_mtime_ns, f.read())
    return files


def test_run_leaves_a_complete_reloadable_model_dir(tiny_config, tmp_path):
    model_dir = str(tmp_path / "run")
    config = tiny_config(max_steps=60, eval_every=25, log_every=20,
                         checkpoint_every=10, keep_checkpoints=2, plots=True)
    metrics = main.run(config, model_dir)
    for name in ("loss_curves", "latent_space", "manifold_linear",
                 "manifold_inverse_cdf", "traversal_dim0", "reconstructions",
                 "prior_samples"):
        assert os.path.getsize(os.path.join(model_dir, "plots", f"{name}.png"))

    for name in ("model_config.json", "flags.txt", "flags.json",
                 "history.jsonl", "metrics.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    manager_state = tf.train.get_checkpoint_state(run_dir.checkpoint_dir(model_dir))
    assert manager_state.model_checkpoint_path.endswith("ckpt-60")
    assert len(manager_state.all_model_checkpoint_paths) == 2  # --keep_checkpoints

    history = read_history(model_dir)
    assert [r["step"] for r in history] == [25, 50, 60]
    assert all(set(r) == HISTORY_KEYS for r in history)
    assert history[-1]["eval_iwae"] >= history[-1]["eval_elbo"] - 1.0
    assert metrics == read_metrics(model_dir)
    assert metrics["step"] == 60 and metrics["examples_per_sec"] > 0
    assert metrics["eval_elbo"] == history[-1]["eval_elbo"]
    assert metrics["config"] == config.to_dict()
    assert metrics["kl"] == "analytic"  # --kl=auto with a normal prior.

    with open(os.path.join(model_dir, "flags.json")) as f:
        assert json.load(f) == dict(config.to_dict(), model_dir=model_dir)

    train_tags = summary_tags(model_dir, "train")
    for tag in ("loss", "elbo", "rate", "distortion", "beta", "learning_rate",
                "examples_per_sec"):
        assert train_tags[tag] == [20, 40, 60], tag
    eval_tags = summary_tags(model_dir, "eval")
    for tag in ("elbo", "rate", "distortion", "iwae", "reconstructions",
                "prior_samples"):
        assert eval_tags[tag] == [25, 50, 60], tag

    model = tfpvae.load(model_dir)
    assert model.sample(4, seed=0).shape == (4, 8, 8, 1)


def test_mock_tfds_mnist_trains_with_dynamic_binarization(mock_mnist,
                                                          tiny_config, tmp_path):
    config = tiny_config(dataset="mnist", batch_size=16, max_steps=3)
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["dataset"]["data_shape"] == [28, 28, 1]
    # --binarize=auto: grayscale images with a bernoulli likelihood.
    assert metrics["dataset"]["binarize"] == "dynamic"
    assert np.isfinite(metrics["eval_elbo"])


def test_real_binarized_mnist(binarized_mnist, tiny_config, tmp_path):
    config = tiny_config(dataset=str(binarized_mnist), batch_size=100,
                         max_steps=3, eval_k=0)
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["dataset"]["sizes"] == {"train": 50000, "valid": 10000}
    assert metrics["dataset"]["binarize"] == "none"  # Already binary.
    assert metrics["eval_iwae"] is None and np.isfinite(metrics["eval_elbo"])


def test_real_mnist_digits_conv(mnist_idx, tiny_config, tmp_path):
    config = tiny_config(dataset=str(mnist_idx), digits=(1, 8),
                         architecture="conv", conv_filters=(4, 8),
                         likelihood="continuous_bernoulli", max_steps=3)
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["dataset"]["data_shape"] == [28, 28, 1]
    # 1135 ones and 974 eights in the MNIST test images.
    assert sum(metrics["dataset"]["sizes"].values()) == 1135 + 974


def test_same_seed_same_losses_other_seed_other_losses(tiny_config, tmp_path):
    config = tiny_config(max_steps=12, eval_every=6, kl="mc", n_samples=3,
                         epsilon_std=1.0)
    runs = [train.train_and_evaluate(config, str(tmp_path / name))
            for name in ("a", "b")]
    other = train.train_and_evaluate(config.replace(seed=1), str(tmp_path / "c"))
    histories = [read_history(tmp_path / name) for name in ("a", "b", "c")]
    losses = [[r["train_loss"] for r in h] for h in histories]
    assert losses[0] == losses[1]
    assert runs[0]["eval_iwae"] == runs[1]["eval_iwae"]
    assert losses[0] != losses[2] and runs[0]["eval_elbo"] != other["eval_elbo"]


def test_resume_continues_exactly_where_it_stopped(tiny_config, tmp_path):
    # 1617 training examples / batch 400 = 4 steps per epoch; stopping at
    # step 6 stops in the middle of the second epoch.
    config = tiny_config(batch_size=400, max_steps=10, eval_every=5,
                         checkpoint_every=1)
    reference = train.train_and_evaluate(config, str(tmp_path / "whole"))
    model_dir = str(tmp_path / "split")
    train.train_and_evaluate(config.replace(max_steps=6), model_dir)
    resumed = train.train_and_evaluate(config, model_dir)
    assert resumed["step"] == 10
    assert resumed["eval_elbo"] == reference["eval_elbo"]
    assert resumed["eval_iwae"] == reference["eval_iwae"]
    assert [r["step"] for r in read_history(model_dir)] == [5, 6, 10]
    # Running a finished run again changes nothing and returns its metrics.
    again = train.train_and_evaluate(config, model_dir)
    assert again["eval_elbo"] == reference["eval_elbo"]
    assert [r["step"] for r in read_history(model_dir)] == [5, 6, 10]


def test_one_iterator_serves_every_epoch(tiny_config, tmp_path, monkeypatch):
    # A new training iterator per epoch cost 10-20 s at every epoch's start
    # with the two-layer HVAE (in freeing the old one): a run makes one, for
    # all its epochs (4 steps each here), and a resumed run one more. The
    # order of the batches is checked by the resume tests above and by
    # test_compatibility (0.1's numbers, made with an iterator per epoch).
    made = []

    def counting_iter(source):
        made.append(source)
        return iter(source)

    monkeypatch.setattr(loop, "iter", counting_iter, raising=False)
    config = tiny_config(batch_size=400, max_steps=10, eval_every=5)
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(config.replace(max_steps=6), model_dir)
    assert len(made) == 1
    train.train_and_evaluate(config, model_dir)
    assert len(made) == 2


def test_history_written_after_the_last_checkpoint_is_dropped(tiny_config,
                                                              tmp_path):
    model_dir = str(tmp_path / "run")
    config = tiny_config(max_steps=4, eval_every=2)
    train.train_and_evaluate(config, model_dir)
    path = os.path.join(model_dir, run_dir.HISTORY_FILE)
    with open(path, "a") as f:  # As if killed after evaluating step 6 ...
        f.write(json.dumps({"step": 6}) + "\n" + '{"step": 8, "tor')  # ... and 8.
    train.train_and_evaluate(config.replace(max_steps=6), model_dir)
    assert [r["step"] for r in read_history(model_dir)] == [2, 4, 6]


def test_model_dir_with_another_model_is_refused_untouched(tiny_config,
                                                           tmp_path):
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(), model_dir)
    before = snapshot(model_dir)
    with pytest.raises(train.ModelDirError) as error:
        train.train_and_evaluate(tiny_config(latent_dim=3, hidden_units=(8,)),
                                 model_dir)
    message = str(error.value)
    assert "\n" not in message
    assert "latent_dim: 2 there, 3 now" in message
    assert "hidden_units: 16 there, 8 now" in message
    assert snapshot(model_dir) == before


def test_foreign_directory_is_refused(tiny_config, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(train.ModelDirError, match="not a tfpvae model directory"):
        train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config,
                                                           tmp_path):
    model_dir = str(tmp_path / "run")
    # Adam moves every weight by ~1e30 per step: finite after the first step,
    # an infinite loss at the second.
    config = tiny_config(learning_rate=1e30, max_steps=20, checkpoint_every=1)
    with pytest.raises(train.TrainingDiverged, match="the loss became"):
        train.train_and_evaluate(config, model_dir)
    latest = tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir))
    assert latest is not None
    model = tfpvae.load(model_dir)
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)


def test_bernoulli_on_grayscale_without_binarizing_is_refused(tiny_config,
                                                              tmp_path):
    with pytest.raises(ValueError, match="--binarize") as error:
        train.train_and_evaluate(tiny_config(binarize="none"),
                                 str(tmp_path / "run"))
    assert "continuous_bernoulli" in str(error.value)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(posterior_flow="iaf", flow_context_units=3, flow_layers=2),
    dict(prior="vamp", mixture_components=4),
    dict(prior="mixture", mixture_components=3, likelihood="gaussian",
         binarize="none"),
    dict(architecture="conv", conv_filters=(4,), n_samples=3),
    dict(mixed_precision="mixed_float16", optimizer="rmsprop"),
    dict(mixed_precision="mixed_bfloat16", optimizer="sgd",
         lr_schedule="cosine", jit_compile=True),
], ids=["plain", "iaf_context", "vamp", "mixture_gaussian", "conv_iwae",
        "float16", "bfloat16_xla"])
def test_every_trainable_variable_changes(overrides, tiny_config):
    config = tiny_config(**overrides)
    dataset = train.load_data(config)
    model = train.build_model(config, dataset.data_shape)
    optimizer = train.build_optimizer(config)
    train.base_optimizer(optimizer).build(model.trainable_variables)
    step_fn = train.make_train_step(
        model, optimizer, None, kl=evaluation.resolve_kl(config.kl, model),
        n_samples=config.n_samples, global_batch_size=config.batch_size,
        seed=0, jit_compile=config.jit_compile)
    before = [v.numpy().copy() for v in model.trainable_variables]
    batches = tfpvae.data.make_train_dataset(
        dataset, config.batch_size, seed=0, binarize=dataset.binarize)
    for step, x in enumerate(batches.take(3)):
        sums = step_fn(x, tf.constant(step, tf.int64), tf.constant(1.0))
        assert np.all(np.isfinite(sums.numpy()))
    unchanged = [v.name for v, old in zip(model.trainable_variables, before)
                 if np.array_equal(v.numpy(), old)]
    assert not unchanged


def test_kl_warmup_ramps_beta_linearly(tiny_config, tmp_path):
    config = tiny_config(beta=2.0, kl_warmup_steps=8, max_steps=12,
                         eval_every=4)
    assert [train.kl_weight(config, t) for t in (0, 2, 8, 20)] == [
        0.0, 0.5, 2.0, 2.0]
    train.train_and_evaluate(config, str(tmp_path / "run"))
    # The weight of the latest step: steps 3, 7 and 11 (counting from 0).
    assert [r["beta"] for r in read_history(tmp_path / "run")] == [
        0.75, 1.75, 2.0]


def test_cosine_schedule_decays_over_the_run(tiny_config, tmp_path):
    config = tiny_config(lr_schedule="cosine", max_steps=8, eval_every=4)
    train.train_and_evaluate(config, str(tmp_path / "run"))
    rates = [r["learning_rate"] for r in read_history(tmp_path / "run")]
    # The rate of the latest step, t = 3 and t = 7 of 8.
    expected = [config.learning_rate * 0.5 * (1 + np.cos(np.pi * t / 8))
                for t in (3, 7)]
    assert rates == pytest.approx(expected, rel=1e-5)


def test_cosine_decay_over_the_last_epochs_follows_the_closed_form(
        tiny_config):
    config = tiny_config(lr_schedule="cosine", lr_decay_epochs=2, epochs=5,
                         max_steps=0, learning_rate=0.01)
    rate = train.learning_rate_schedule(config, total_steps=50,
                                        steps_per_epoch=10)
    steps = [0, 29, 30, 35, 44, 49, 50, 70]
    # Constant until step 30, then 0.01 * (1 + cos(pi * (t - 30) / 20)) / 2.
    expected = [0.01 if t < 30 else
                0.005 * (1 + np.cos(np.pi * min(t - 30, 20) / 20))
                for t in steps]
    got = [float(rate(tf.constant(t, tf.int64))) for t in steps]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)
    constant = train.learning_rate_schedule(
        tiny_config(lr_schedule="constant", learning_rate=0.01), 50, 10)
    assert float(constant(tf.constant(49, tf.int64))) == pytest.approx(0.01)


@pytest.mark.parametrize("flags, message", [
    (dict(lr_decay_epochs=3), "add --lr_schedule=cosine"),
    (dict(lr_schedule="cosine", lr_decay_epochs=30, epochs=20, max_steps=0),
     "longer than the run"),
    (dict(lr_schedule="cosine", lr_decay_epochs=-1), "lr_decay_epochs"),
])
def test_bad_lr_decay_flags_are_refused(flags, message, tiny_config):
    with pytest.raises(ValueError, match=message):
        tiny_config(**flags)


def test_resumed_run_follows_the_new_learning_rate_flags(tiny_config,
                                                        tmp_path):
    # A checkpoint holds the optimizer's learning-rate variable; restoring
    # it must not override the flags of the resumed session, and a run
    # trained at a constant rate can be resumed with a cosine decay.
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(
        tiny_config(learning_rate=1e-3, max_steps=4, eval_every=4), model_dir)
    train.train_and_evaluate(
        tiny_config(learning_rate=1e-4, max_steps=8, eval_every=4), model_dir)
    train.train_and_evaluate(
        tiny_config(learning_rate=1e-4, max_steps=16, eval_every=4,
                    lr_schedule="cosine"), model_dir)
    rates = [r["learning_rate"] for r in read_history(model_dir)]
    # The rate of the latest step: t = 3, 7 (constant), then the cosine
    # over all 16 steps at t = 11 and 15.
    cosine = [1e-4 * 0.5 * (1 + np.cos(np.pi * t / 16)) for t in (11, 15)]
    assert rates == pytest.approx([1e-3, 1e-4] + cosine, rel=1e-5)


def test_xla_failure_falls_back_with_one_warning(monkeypatch):
    def build(jit_compile):
        @tf.function(jit_compile=jit_compile)
        def step(x):
            # py_function has no XLA kernel.
            return tf.py_function(lambda v: v * 2.0, [x], tf.float32)
        return step

    warnings = []
    monkeypatch.setattr(logging, "warning",
                        lambda msg, *args: warnings.append(msg % args))
    step = train.XlaFallback(build, jit_compile=True)
    assert float(step(tf.constant(1.0))) == 2.0
    assert float(step(tf.constant(2.0))) == 4.0
    assert len(warnings) == 1 and "without --jit_compile" in warnings[0]


def test_progress_line_and_bar():
    progress = train.Progress(total_steps=1000, steps_per_epoch=100,
                              batch_size=50, log_every=10)
    line = progress.line(250, 101.234, 10000.0, bar_width=10)
    assert line == ("step 250/1000  epoch 3/10  [==        ]  10,000 ex/s  "
                    "loss 101.2  ETA 0:00:04")
    # From the second evaluation on, the ETA is the wall-clock time per step
    # between evaluations (here 50 s per 100 steps, with the evaluation),
    # not the 0.005 s per step of the training speed.
    progress.evaluated(100, now=1000.0)
    assert progress.line(250, 101.234, 10000.0).endswith("ETA 0:00:04")
    progress.evaluated(200, now=1050.0)
    assert progress.line(250, 101.234, 10000.0).endswith("ETA 0:06:15")
    progress.evaluated(300, now=1120.0)  # 120 s per 200 steps.
    assert progress.line(250, None, None).endswith("ETA 0:07:30")


def test_config_rules_match_the_command_line_messages():
    with pytest.raises(ValueError, match="use --kl=mc"):
        TrainConfig(kl="analytic", prior="vamp")
    with pytest.raises(ValueError, match="choose one of bernoulli"):
        TrainConfig(likelihood="poisson")
    with pytest.raises(ValueError, match="--latent_dim must be .*>= 1"):
        TrainConfig(latent_dim=0)
    with pytest.raises(ValueError, match="comma-separated list of integers"):
        TrainConfig(hidden_units=(8, "big"))
    assert TrainConfig(hidden_units=[8, "4"]).hidden_units == (8, 4)


def test_best_checkpoint_is_the_best_evaluation(tiny_config, tmp_path):
    model_dir = str(tmp_path / "run")
    metrics = train.train_and_evaluate(
        tiny_config(max_steps=40, eval_every=5, learning_rate=0.05,
                    keep_checkpoints=100), model_dir)
    history = read_history(model_dir)
    scores = [r["eval_iwae"] for r in history]
    best_step = history[int(np.argmax(scores))]["step"]
    assert metrics["best_step"] == best_step
    assert metrics["best_eval_iwae"] == max(scores)
    path = tf.train.latest_checkpoint(run_dir.best_checkpoint_dir(model_dir))
    assert path.endswith(f"ckpt-{best_step}")
    # The best model holds the weights that were evaluated at that step.
    best_model = tfpvae.load(model_dir, best=True)
    at_step = tfpvae.load(model_dir, checkpoint=os.path.join(
        run_dir.checkpoint_dir(model_dir), f"ckpt-{best_step}"))
    for a, b in zip(best_model.variables, at_step.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_selection_counts_evaluations_since_the_best():
    records = [{"step": 10, "eval_iwae": -50.0}, {"step": 20, "eval_iwae": -40.0},
               {"step": 30, "eval_iwae": -41.0}, {"step": 40, "eval_iwae": -39.0}]
    # Resuming at step 30 ignores the record a killed run wrote after it.
    selection = train.Selection("iwae", 2, records, step=30)
    assert (selection.best_step, selection.best_value) == (20, -40.0)
    assert selection.since_best == 1 and not selection.stop
    assert not selection.update(35, {"iwae": -45.0})
    assert selection.stop  # Two evaluations without improvement.
    assert selection.update(40, {"iwae": -30.0}) and not selection.stop
    never = train.Selection("elbo", 0, [], step=0)
    for step in range(5):
        never.update(step, {"elbo": -float(step)})
    assert never.since_best == 4 and not never.stop


def test_early_stopping_stops_and_says_so(tiny_config, tmp_path):
    # A learning rate this high makes the held-out bound stop improving fast.
    model_dir = str(tmp_path / "run")
    metrics = train.train_and_evaluate(
        tiny_config(max_steps=400, eval_every=4, learning_rate=0.3,
                    early_stopping_patience=2), model_dir)
    history = read_history(model_dir)
    assert metrics["stopped_early"] and metrics["step"] < 400
    assert metrics["step"] == history[-1]["step"]
    best_index = [r["step"] for r in history].index(metrics["best_step"])
    assert len(history) - 1 - best_index == 2


def test_steps_per_execution_gives_the_same_updates_as_single_steps(
        tiny_config, tmp_path):
    # 1617 examples / batch 32 = 50 steps per epoch: calls of 7 steps meet
    # the log steps (every 5), the epoch ends and the end of the run.
    config = tiny_config(max_steps=60, log_every=5, kl_warmup_steps=40,
                         kl="mc", n_samples=2, jit_compile=False)
    runs = {n: train.train_and_evaluate(config.replace(steps_per_execution=n),
                                        str(tmp_path / str(n)))
            for n in (1, 7)}
    histories = {n: read_history(tmp_path / str(n)) for n in runs}
    assert [r["step"] for r in histories[7]] == [50, 60]
    for key in ("train_loss", "train_rate", "eval_elbo", "eval_iwae", "beta"):
        np.testing.assert_allclose([r[key] for r in histories[7]],
                                   [r[key] for r in histories[1]], rtol=1e-6)
    weights = [tfpvae.load(str(tmp_path / str(n))).trainable_variables
               for n in runs]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert summary_tags(tmp_path / "7", "train")["loss"] == list(range(5, 61, 5))


def test_kl_weight_tensor_matches_kl_weight(tiny_config):
    config = tiny_config(kl_warmup_steps=7, beta=0.3)
    for step in (0, 1, 3, 6, 7, 100):
        assert (train.kl_weight_tensor(config, tf.constant(step, tf.int64)).numpy()
                == np.float32(train.kl_weight(config, step)))


def test_nan_inside_a_multi_step_call_names_its_step(tiny_config, tmp_path):
    # The first step runs alone and stays finite; the loss of step 2, the
    # first step of a call of 10, is infinite.
    config = tiny_config(learning_rate=1e30, max_steps=20,
                         steps_per_execution=10)
    with pytest.raises(train.TrainingDiverged, match="at step 2;"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_plots_and_export_use_the_best_checkpoint(tiny_config, tmp_path,
                                                  monkeypatch):
    loads = []
    load = run_dir.load

    def recording_load(model_dir, checkpoint=None, best=False):
        loads.append(best)
        return load(model_dir, checkpoint, best=best)

    monkeypatch.setattr(run_dir, "load", recording_load)
    model_dir = str(tmp_path / "run")
    main.run(tiny_config(export=True), model_dir)
    assert loads == [True]
    assert os.path.isdir(os.path.join(model_dir, run_dir.SAVED_MODEL_SUBDIR))


def test_device_line_names_devices_strategy_precision_and_xla(monkeypatch):
    from tfpvae.train import devices  # pylint: disable=import-outside-toplevel
    strategy = tf.distribute.get_strategy()
    assert devices.describe(
        strategy, strategy_name="default", precision="none",
        mixed_precision="auto", xla=True, jit_compile="auto") == (
        "Device: CPU (no GPU found); default strategy with 1 replica(s); "
        "precision float32 (--mixed_precision=auto); XLA on "
        "(--jit_compile=auto).")
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU")
            for i in range(3)]
    names = {gpus[0]: "NVIDIA A100", gpus[1]: "NVIDIA A100",
             gpus[2]: "NVIDIA L4"}
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"device_name": names[device]})
    assert devices.describe(
        strategy, strategy_name="mirrored", precision="mixed_float16",
        mixed_precision="mixed_float16", xla=False, jit_compile=False) == (
        "Device: 2 x NVIDIA A100, NVIDIA L4; mirrored strategy with 1 "
        "replica(s); precision float16 compute, float32 variables "
        "(--mixed_precision=mixed_float16); XLA off (--jit_compile=false).")


def test_a_run_logs_one_device_line(tiny_config, tmp_path, monkeypatch):
    lines = []
    info = logging.info
    monkeypatch.setattr(logging, "info", lambda msg, *args: (
        lines.append(msg % args if args else msg), info(msg, *args)))
    train.train_and_evaluate(
        tiny_config(max_steps=2, jit_compile=False, mixed_precision="none"),
        str(tmp_path / "run"))
    (line,) = [line for line in lines if "strategy" in line or "XLA" in line]
    device = ("CPU (no GPU found)" if not tf.config.list_physical_devices("GPU")
              else line.split("; ")[0][len("Device: "):])
    assert line == (f"Device: {device}; default strategy with 1 replica(s); "
                    f"precision float32 (--mixed_precision=none); XLA off "
                    f"(--jit_compile=false).")


def test_training_time_goes_on_from_the_checkpoint(tiny_config, tmp_path,
                                                    monkeypatch):
    # A run killed before its first evaluation has a checkpoint and no
    # history: its training time must come from the checkpoint. Session 1
    # "lasts an hour" (its clock jumps by 3,600 s after it starts).
    import time  # pylint: disable=import-outside-toplevel
    from tfpvae.train import loop  # pylint: disable=import-outside-toplevel
    started = []

    def hour_long_clock():
        started.append(True)
        return time.monotonic() + (3600.0 if len(started) > 1 else 0.0)

    monkeypatch.setattr(loop, "time", type("Clock", (), dict(
        monotonic=staticmethod(hour_long_clock),
        perf_counter=staticmethod(time.perf_counter),
        time=staticmethod(time.time))))
    config = tiny_config(max_steps=6, eval_every=100, checkpoint_every=3)
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(config, model_dir)
    assert 3600 < read_history(model_dir)[-1]["elapsed"] < 3600 + 600
    os.remove(os.path.join(model_dir, run_dir.HISTORY_FILE))
    monkeypatch.undo()  # Session 2 runs on the real clock.
    train.train_and_evaluate(config.replace(max_steps=8), model_dir)
    history = read_history(model_dir)
    assert [r["step"] for r in history] == [8]
    assert 3600 < history[0]["elapsed"] < 3600 + 1200


def test_evaluation_lost_by_a_kill_is_done_again_on_resume(tiny_config,
                                                           tmp_path):
    # Killed after saving the checkpoint of step 10 (an evaluation step),
    # before recording its evaluation: the next session evaluates it first.
    config = tiny_config(max_steps=10, eval_every=5, checkpoint_every=5,
                         jit_compile=False)
    reference = train.train_and_evaluate(config.replace(max_steps=15),
                                         str(tmp_path / "whole"))
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(config, model_dir)
    history = read_history(model_dir)
    with open(os.path.join(model_dir, run_dir.HISTORY_FILE), "w") as f:
        f.write(json.dumps(history[0]) + "\n")  # Step 10's record is lost.
    metrics = train.train_and_evaluate(config.replace(max_steps=15), model_dir)
    history = read_history(model_dir)
    assert [r["step"] for r in history] == [5, 10, 15]
    assert [r["eval_elbo"] for r in history] == [
        r["eval_elbo"] for r in read_history(tmp_path / "whole")]
    assert metrics["best_step"] == reference["best_step"]
