"""Figures of tfpvae.plots and the tfpvae.plot command line.

Tiny models (latent 2 or 4, one hidden layer of 16) are saved the way the
trainer saves them, beside a small .npz of labelled images and a synthetic
flags.json/history.jsonl, so nothing here depends on the trainer. Each figure
is checked for content: the PNG exists, has the figure's pixel size, is not
blank, and changes when the model's weights change (and only then).
"""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from absl import flags
from matplotlib import image as mpimg

import tfpvae
from tfpvae import data
from tfpvae import plot
from tfpvae import figures as plots
from tfpvae import run_dir

from conftest import exit_code

IMAGE = (6, 6)
HISTORY = [dict(step=10 * e, epoch=float(e), train_loss=-(-90.0 + 20 / e),
                train_elbo=-90.0 + 20 / e, train_rate=3.0 + e,
                train_distortion=87.0 - 20 / e, eval_elbo=-92.0 + 20 / e,
                eval_rate=3.5 + e, eval_distortion=88.5 - 20 / e,
                eval_iwae=-91.0 + 20 / e, eval_k=10) for e in range(1, 6)]
# A resumed run's first record has no train means yet.
HISTORY[2].update(train_loss=None, train_elbo=None, train_rate=None,
                  train_distortion=None)

DEFAULT_FILES = {"loss_curves", "latent_space", "manifold_linear",
                 "manifold_inverse_cdf", "traversal_dim0", "traversal_dim1",
                 "traversals",
                 "reconstructions", "prior_samples"}


def tiny_model(latent_dim=2, data_shape=IMAGE + (1,), **kwargs):
    kwargs.setdefault("hidden_units", (16,))
    return tfpvae.VAE(latent_dim=latent_dim, data_shape=data_shape, seed=0,
                      **kwargs)


def save_run(model, directory, dataset_path, history=HISTORY):
    """Writes a model directory as the trainer would."""
    run_dir.save_model_config(model, directory)
    tf.train.CheckpointManager(run_dir.make_checkpoint(model),
                               run_dir.checkpoint_dir(directory), 1).save()
    config = model.get_config()
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump({"dataset": str(dataset_path), "binarize": "none",
                   "likelihood": config["likelihood"],
                   "latent_dim": config["latent_dim"], "hidden_units": [16],
                   "seed": 0}, f)
    with open(os.path.join(directory, plots.HISTORY_FILE), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
    return directory


def read_png(path):
    return mpimg.imread(path)[..., :3]  # [H, W, RGB] in [0, 1]


def assert_drawn(path, fig_size=None):
    """The PNG exists, has a sensible (or the given) size and is not blank."""
    pixels = read_png(path)
    height, width = pixels.shape[:2]
    if fig_size is not None:
        assert (width, height) == tuple(round(s * plots.DPI) for s in fig_size)
    assert 150 <= height <= 2000 and 400 <= width <= 2000, (path, width, height)
    assert pixels.std() > 0.05, path


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    """An .npz of binary 6x6 images with labels 0..3."""
    path = tmp_path_factory.mktemp("data") / "images.npz"
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("valid", 80)):
        arrays[split] = (rng.random((n,) + IMAGE) < 0.3).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 4, n)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def dataset(image_data):
    return data.load_dataset(str(image_data))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, image_data, dataset):
    """A saved latent-2 model with every default figure drawn."""
    directory = str(tmp_path_factory.mktemp("image_run"))
    model = tiny_model()
    save_run(model, directory, image_data)
    paths = plots.plot_training_run(model, dataset, directory)
    return model, directory, paths


def names(paths):
    return {os.path.splitext(os.path.basename(p))[0] for p in paths}


def test_default_figures_are_drawn(image_run):
    _, directory, paths = image_run
    assert names(paths) == DEFAULT_FILES
    assert all(os.path.dirname(p) == os.path.join(directory, "plots")
               for p in paths)
    sizes = {"loss_curves": (13, 4.2), "latent_space": (7.5, 6.5),
             "manifold_linear": (8, 8.4), "manifold_inverse_cdf": (8, 8.4),
             "prior_samples": (12, 6.6)}
    for path in paths:
        assert_drawn(path, sizes.get(names([path]).pop()))


def test_figures_follow_the_weights(dataset, tmp_path):
    model = tiny_model()
    which = ["manifold", "traversal", "reconstructions", "prior_samples"]

    def render():
        paths = plots.plot_training_run(model, dataset, str(tmp_path), which)
        return {os.path.basename(p): read_png(p) for p in paths}

    before = render()
    again = render()
    for name in before:  # Seeded: the same weights draw the same pixels ...
        np.testing.assert_array_equal(before[name], again[name], err_msg=name)
    for v in model.decoder.trainable_variables + model.encoder.trainable_variables:
        v.assign(v * 1.5 + 0.1)
    after = render()
    for name in before:  # ... and other weights other pixels.
        assert np.abs(before[name] - after[name]).mean() > 1e-3, name


def test_latent_space_colors_points_by_label(dataset):
    labels = np.array([0, 2, 2, 5, 0, 5, 2])
    points = np.random.default_rng(0).normal(size=(len(labels), 2))
    fig = plots.latent_space_figure(points, labels, title="t",
                                    axis_labels=("a", "b"),
                                    label_names=["zero", "one", "two", "three",
                                                 "four", "five"])
    ax, colorbar_ax = fig.axes
    scatter = ax.collections[0]
    colors = scatter.to_rgba(scatter.get_array())
    for label in np.unique(labels):
        same = colors[labels == label]
        np.testing.assert_array_equal(same, np.broadcast_to(same[0], same.shape))
    assert len({tuple(c) for c in colors}) == 3
    assert [t.get_text() for t in colorbar_ax.get_yticklabels()] == [
        "zero", "two", "five"]
    assert ax.get_xlabel() == "a" and ax.get_title() == "t"
    # Without labels: one color and no colorbar.
    fig = plots.latent_space_figure(points, None, title="t",
                                    axis_labels=("a", "b"))
    assert len(fig.axes) == 1 and fig.axes[0].collections[0].get_array() is None


def test_latent_space_uses_the_split_labels(image_run, dataset, tmp_path):
    model = image_run[0]
    unlabelled = data.Dataset(name="x", splits=dataset.splits,
                              labels={s: None for s in dataset.splits},
                              data_shape=dataset.data_shape, kind="image")
    colored = plots.plot_training_run(model, dataset, str(tmp_path / "a"),
                                      "latent_space")
    plain = plots.plot_training_run(model, unlabelled, str(tmp_path / "b"),
                                    "latent_space")
    colored, plain = read_png(colored[0]), read_png(plain[0])
    assert colored.shape == plain.shape
    # Colorbar and colored points versus blue points only.
    saturation = lambda p: (p.max(axis=-1) - p.min(axis=-1)) > 0.3
    hue_count = lambda p: len(np.unique(np.round(p[saturation(p)] * 4), axis=0))
    assert hue_count(colored) > hue_count(plain)


def test_loss_curves_plot_the_history():
    fig = plots.loss_curves_figure(HISTORY)
    loss_ax, rate_ax, distortion_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.lines}
    assert set(lines) == {"train", "valid", "valid -IWAE (k=10)"}
    kept = [r for r in HISTORY if r["train_elbo"] is not None]
    np.testing.assert_allclose(lines["train"].get_xdata(), [r["epoch"] for r in kept])
    np.testing.assert_allclose(lines["train"].get_ydata(),
                               [-r["train_elbo"] for r in kept])
    np.testing.assert_allclose(lines["valid"].get_ydata(),
                               [-r["eval_elbo"] for r in HISTORY])
    np.testing.assert_allclose(rate_ax.lines[1].get_ydata(),
                               [r["eval_rate"] for r in HISTORY])
    assert distortion_ax.get_xlabel() == "epoch"
    assert all(ax.get_title() and ax.get_ylabel() for ax in fig.axes)


def fake_history(values, metric="eval_iwae", eval_k=10):
    """Records of epochs 1.. with `metric` from `values` and 0.5 h per epoch."""
    return [{"step": 100 * e, "epoch": float(e), "elapsed": 1800.0 * e,
             metric: v, "eval_k": eval_k} for e, v in enumerate(values, 1)]


# Best -89.12 at epoch 5 (not the last); epoch 3 was not evaluated.
RUN_A = fake_history([-200.0, -120.0, None, -95.5, -89.12, -89.5])
RUN_B = fake_history([-210.0, -130.0, -100.25, -97.0])


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_compare_runs_plots_each_run_and_its_best():
    fig = plots.compare_runs_figure({"vamp": RUN_A, "vae": RUN_B,
                                     "new": fake_history([None, None])})
    by_epoch, by_time = fig.axes
    assert legend_texts(by_epoch) == ["vamp (best -89.12)", "vae (best -97.00)",
                                      "new (no eval_iwae)"]
    assert by_epoch.get_title() == "held-out IWAE_10 by epoch"
    assert by_time.get_title() == "held-out IWAE_10 by training time"
    assert "nats" in by_epoch.get_ylabel()
    assert by_time.get_xlabel() == "training time (hours)"
    for ax, x_of in ((by_epoch, lambda r: r["epoch"]),
                     (by_time, lambda r: r["elapsed"] / 3600)):
        lines = {line.get_label(): line for line in ax.lines}
        kept = [r for r in RUN_A if r["eval_iwae"] is not None]  # None skipped.
        curve = lines["vamp (best -89.12)"]
        np.testing.assert_allclose(curve.get_xdata(), [x_of(r) for r in kept])
        np.testing.assert_allclose(curve.get_ydata(),
                                   [r["eval_iwae"] for r in kept])
        # The best values are marked with a dot of the run's color.
        dots = [line for line in ax.lines if line.get_label().startswith("_")]
        assert [(d.get_xdata()[0], d.get_ydata()[0]) for d in dots] == [
            (x_of(RUN_A[4]), -89.12), (x_of(RUN_B[3]), -97.0)]
        assert dots[0].get_color() == curve.get_color()
    # Zoomed on the top 15 nats: the early epochs (-200) are below the axis.
    low, high = by_epoch.get_ylim()
    assert low == pytest.approx(-89.12 - plots.COMPARE_ZOOM_NATS)
    assert -89.12 < high < -85
    assert by_time.get_ylim() == (low, high)


def test_compare_runs_zoom_ymin_and_metric():
    # The zoom keeps every run's best value in view ...
    fig = plots.compare_runs_figure({"a": RUN_A, "b": fake_history([-150, -120])})
    assert fig.axes[0].get_ylim()[0] == pytest.approx(-121.0)
    # ... and does not reach below the data; ymin overrides it.
    fig = plots.compare_runs_figure({"a": fake_history([-91.0, -90.0])})
    assert fig.axes[0].get_ylim()[0] == pytest.approx(-91.5)
    fig = plots.compare_runs_figure({"a": RUN_A}, ymin=-250)
    assert fig.axes[0].get_ylim()[0] == -250
    fig = plots.compare_runs_figure(
        {"a": fake_history([-95.0, -93.0], "eval_elbo")}, "eval_elbo")
    assert fig.axes[0].get_title() == "held-out ELBO by epoch"
    assert legend_texts(fig.axes[0]) == ["a (best -93.00)"]
    fig = plots.compare_runs_figure({"a": RUN_A,
                                     "b": fake_history([-99.0], eval_k=100)})
    assert fig.axes[0].get_title() == "held-out IWAE_k (k: 10, 100) by epoch"
    for kwargs, message in [
            (dict(histories={"a": RUN_A}, metric="train_elbo"), "Unknown metric"),
            (dict(histories={}), "No runs"),
            (dict(histories={"a": RUN_A}, metric="eval_elbo"),
             "No run has a value of eval_elbo"),
            (dict(histories={"a": RUN_A}, ymin=-80), "ymin=-80 is not below")]:
        with pytest.raises(ValueError, match=message):
            plots.compare_runs_figure(**kwargs)


def test_manifold_grid_values():
    np.testing.assert_allclose(plots.manifold_values("linear", 7),
                               np.linspace(-3, 3, 7), rtol=1e-6)
    np.testing.assert_allclose(
        plots.manifold_values("inverse_cdf", 9),
        scipy.stats.norm.ppf(np.linspace(0.05, 0.95, 9)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown grid"):
        plots.manifold_values("log", 3)


def test_grids_span_the_chosen_dims_with_the_rest_fixed():
    model = tiny_model(latent_dim=4)
    decoded = []
    decode = model.decode
    model.decode = lambda z, labels=None: decoded.append(np.asarray(z)) or decode(z)
    values = np.array([-1.0, 0.0, 2.0], np.float32)
    fix = np.array([7.0, 8.0, 9.0, 10.0], np.float32)
    plots.manifold_figure(model, values, dims=(1, 3), base=fix, title="t")
    z = decoded[-1].reshape(3, 3, 4)  # [row, column, latent]
    np.testing.assert_array_equal(z[:, :, 1], np.tile(values, (3, 1)))
    np.testing.assert_array_equal(z[:, :, 3], np.tile(values[::-1, None], (1, 3)))
    np.testing.assert_array_equal(z[:, :, [0, 2]], np.broadcast_to([7.0, 9.0], (3, 3, 2)))
    plots.traversal_figure(model, 2, values, fix, base_description="b")
    z = decoded[-1]
    np.testing.assert_array_equal(z[:, 2], values)
    np.testing.assert_array_equal(z[:, [0, 1, 3]], np.broadcast_to(fix[[0, 1, 3]], (3, 3)))


def test_the_traversal_grid_has_one_traversal_per_row():
    model = tiny_model(latent_dim=4)
    values = np.array([-2.0, 0.5, 3.0], np.float32)
    base = np.array([0.3, -0.7, 1.1, 0.2], np.float32)
    dims = [2, 0, 3]
    ax = plots.traversal_grid_figure(model, dims, values, base,
                                     base_description="b").axes[0]
    canvas = np.asarray(ax.images[0].get_array())
    size = IMAGE[0]
    assert canvas.shape == (len(dims) * (size + 1) - 1, len(values) * (size + 1) - 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z[2]", "z[0]", "z[3]"]
    for row, dim in enumerate(dims):
        z = np.tile(base, (len(values), 1))
        z[:, dim] = values  # Only this row's dimension moves.
        expected = model.decode(z).mean().numpy()[..., 0]
        for col in range(len(values)):
            cell = canvas[row * (size + 1):row * (size + 1) + size,
                          col * (size + 1):col * (size + 1) + size]
            np.testing.assert_allclose(cell, np.clip(expected[col], 0, 1),
                                       atol=1e-6)
    # The rows differ: each sweeps its own dimension.
    assert np.abs(canvas[:size] - canvas[size + 1:2 * size + 1]).max() > 1e-3


def test_higher_latent_dims_and_chosen_vectors(image_data, dataset, tmp_path):
    model = tiny_model(latent_dim=4)
    directory = save_run(model, str(tmp_path), image_data)
    options = plots.PlotOptions(dims=(1, 2), fix=(0, 1, 1, 1), z=(0, 1, 0, 0),
                                traverse_from=3, tsne_points=40)
    paths = plots.plot_training_run(model, dataset, directory, options=options)
    assert names(paths) == (DEFAULT_FILES - {"latent_space"}) | {
        "latent_space_pca", "latent_space_tsne", "traversal_dim2",
        "traversal_dim3", "grid_dims_1_2", "decoded_z"}
    for path in paths:
        assert_drawn(path)


def test_color_images(tmp_path):
    model = tiny_model(data_shape=IMAGE + (3,), likelihood="gaussian")
    x = np.random.default_rng(0).random((20,) + IMAGE + (3,)).astype(np.float32)
    ds = data.Dataset(name="rgb", splits={"train": x, "valid": x},
                      labels={"train": None, "valid": None},
                      data_shape=IMAGE + (3,), kind="image")
    paths = plots.plot_training_run(model, ds, str(tmp_path),
                                    ["reconstructions", "prior_samples"])
    for path in paths:
        assert_drawn(path)
        pixels = read_png(path)
        assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 0.3, path


def test_tabular_data_gets_only_curves_and_latent_space(tmp_path, monkeypatch):
    model = tiny_model(data_shape=(5,), likelihood="gaussian")
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    ds = data.Dataset(name="table", splits={"train": x, "valid": x},
                      labels={"train": None, "valid": None}, data_shape=(5,),
                      kind="tabular")
    save_run(model, str(tmp_path), "unused.csv")
    # Record plots' log lines directly: caplog misses absl lines when another
    # test in the same process has changed absl's logging handlers.
    messages = []
    monkeypatch.setattr(plots.logging, "info",
                        lambda msg, *args: messages.append(msg % args))
    paths = plots.plot_training_run(model, ds, str(tmp_path))
    assert names(paths) == {"loss_curves", "latent_space"}
    skipped = [m for m in messages if m.startswith("Skipping")]
    not_images = [m for m in skipped if "not images" in m]
    assert len(not_images) == 5
    # The figures of models with labels or layers are not for this one.
    assert all("no labels" in m or "one latent layer" in m
               or "no classifier" in m for m in set(skipped) - set(not_images))


def test_bad_options_are_refused(image_run):
    model = image_run[0]
    for options, message in [
            (plots.PlotOptions(dims=(0, 0)), "two different"),
            (plots.PlotOptions(dims=(0, 2)), "out of range"),
            (plots.PlotOptions(fix=(1.0,)), "fix has 1 values"),
            (plots.PlotOptions(z=(1.0, 2.0, 3.0)), "z has 3 values"),
            (plots.PlotOptions(traverse_dims=(5,)), "out of range"),
            (plots.PlotOptions(grid_size=0), "grid_size")]:
        with pytest.raises(ValueError, match=message):
            plots.plot_training_run(model, None, "unused", options=options)
    with pytest.raises(ValueError, match="Unknown plot name"):
        plots.plot_training_run(model, None, "unused", ["manifold", "bogus"])
    with pytest.raises(ValueError, match="needs a latent vector"):
        plots.plot_training_run(model, None, "unused", "decoded_z")


# --------------------------------------------------------------------------
# Command line.

def run_cli(*args):
    flag_values = flags.FlagValues()
    plot.define_flags(flag_values)
    flag_values(["plot", *args])
    return plot.run(flag_values)


def test_cli_draws_the_chosen_plots(image_run):
    _, directory, _ = image_run
    paths = run_cli(f"--model_dir={directory}", "--which=decoded_z,traversal",
                    "--z=0.5,-1", "--traverse_from=2", "--traverse_dims=1")
    assert names(paths) == {"decoded_z", "traversal_dim1"}
    for path in paths:
        assert_drawn(path)


def test_cli_draws_the_best_checkpoint_on_request(image_run, tmp_path):
    model, directory, _ = image_run
    other = tiny_model()
    for v in other.trainable_variables:
        v.assign(v + 0.5)
    best_dir = run_dir.best_checkpoint_dir(directory)
    try:
        tf.train.CheckpointManager(run_dir.make_checkpoint(other), best_dir,
                                   1).save()
        args = ("--which=decoded_z", "--z=0.5,-1", "--seed=3")
        latest = read_png(run_cli(f"--model_dir={directory}", *args)[0])
        best = read_png(run_cli(f"--model_dir={directory}", "--best", *args)[0])
    finally:
        shutil.rmtree(best_dir)
    expected = read_png(plots.plot_training_run(
        other, None, str(tmp_path), "decoded_z",
        plots.PlotOptions(z=[0.5, -1], seed=3))[0])
    assert np.abs(latest - best).max() > 0.1
    np.testing.assert_allclose(best, expected, atol=1e-6)


def test_cli_errors(image_run, tmp_path):
    _, directory, _ = image_run
    for args, error, message in [
            ([f"--model_dir={tmp_path / 'missing'}"], FileNotFoundError,
             "does not exist"),
            ([f"--model_dir={directory}", "--which=manifold,nope"], ValueError,
             r"Unknown plot name\(s\) \['nope'\]"),
            ([f"--model_dir={directory}", "--z=1,2,3"], ValueError,
             "z has 3 values; the model has latent_dim=2"),
            ([f"--model_dir={directory}", "--fix=1"], ValueError, "fix has 1"),
            ([f"--model_dir={directory}", "--z=1,a"], ValueError,
             "comma-separated list of floats"),
            ([f"--model_dir={directory}", "--traverse_from=500",
              "--which=traversal"], ValueError, "not an example index")]:
        with pytest.raises(error, match=message):
            run_cli(*args)


def test_cli_exits_with_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfpvae.plot", f"--model_dir={tmp_path / 'none'}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    missing = tmp_path / "none"
    assert last == (f"tfpvae.plot: error: --model_dir={missing} does not "
                    f"exist; train a model there first with `python -m "
                    f"tfpvae.main --model_dir={missing}`.")


def write_history(directory, records):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, plots.HISTORY_FILE), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(directory)


@pytest.fixture
def two_runs(tmp_path):
    return (write_history(tmp_path / "runs" / "binarized_mnist_vamp", RUN_A),
            write_history(tmp_path / "runs" / "binarized_mnist_vae", RUN_B))


def test_run_labels():
    assert plot.run_labels(["runs/binarized_mnist_vamp",
                            "runs/binarized_mnist_vae/"]) == ["vamp", "vae"]
    assert plot.run_labels(["runs/binarized_mnist_vae"]) == ["binarized_mnist_vae"]
    assert plot.run_labels(["r/vae", "r/vamp"]) == ["vae", "vamp"]
    assert plot.run_labels(["r/mnist_", "r/mnist_b"]) == ["mnist_", "mnist_b"]
    assert plot.run_labels(["a/run", "b/run/"]) == ["a/run", "b/run"]


def test_cli_compares_runs(two_runs, tmp_path, monkeypatch):
    drawn = []
    figure = plots.compare_runs_figure
    monkeypatch.setattr(plots, "compare_runs_figure",
                        lambda h, m: drawn.append((h, m)) or figure(h, m))
    paths = run_cli(f"--compare={','.join(two_runs)}")
    assert paths == [str(tmp_path / "runs" / "compare_eval_iwae.png")]
    assert_drawn(paths[0], (13, 5))
    histories, metric = drawn[-1]
    assert metric == "eval_iwae"
    assert histories == {"vamp": RUN_A, "vae": RUN_B}
    output = tmp_path / "figures" / "elbo.png"
    elbo_run = write_history(tmp_path / "elbo_run",
                             fake_history([-120.0, -95.0], "eval_elbo"))
    assert run_cli(f"--compare={two_runs[0]},{elbo_run}", "--metric=eval_elbo",
                   f"--output={output}") == [str(output)]
    assert_drawn(output, (13, 5))
    assert drawn[-1][1] == "eval_elbo" and list(drawn[-1][0]) == [
        "binarized_mnist_vamp", "elbo_run"]


def test_cli_compare_errors(two_runs, tmp_path, monkeypatch):
    no_history = tmp_path / "empty_run"
    no_history.mkdir()
    compare = f"--compare={','.join(two_runs)}"
    cases = [
        ([f"--compare={two_runs[0]},{no_history}"],
         f"--compare: {no_history} has no history.jsonl; give the directories"),
        ([f"--compare={tmp_path / 'gone'}"], "gone does not exist"),
        ([compare, "--which=manifold"], "drop --which "),
        ([compare, f"--model_dir={two_runs[0]}", "--seed=1"],
         "drop --model_dir, --seed "),
        (["--compare="], "--compare needs model directories"),
        ([f"--compare={two_runs[0]},{two_runs[0]}/"], "names a directory twice"),
        ([compare, "--output=figure.pdf"], "must be a .png file"),
        ([compare, "--metric=eval_elbo"],
         "has a value of eval_elbo; wait for an evaluation or try "
         "--metric=eval_iwae"),
        ([f"--model_dir={two_runs[0]}", "--output=x.png"],
         "--output only apply to --compare"),
        (["--which=manifold"], "--model_dir is required"),
    ]
    # main() ends each with one line on stderr and exit status 1.
    run = plot.run
    for args, message in cases:
        flag_values = flags.FlagValues()
        plot.define_flags(flag_values)
        flag_values(["plot", *args])
        monkeypatch.setattr(plot, "run", lambda: run(flag_values))
        with pytest.raises(SystemExit) as exit_info:
            plot.main(["plot"])
        error = exit_info.value.code
        assert isinstance(error, str), args  # sys.exit(str) exits with 1.
        assert error.startswith("tfpvae.plot: error: ") and "\n" not in error
        assert message in error, (args, error)
    assert not list(tmp_path.rglob("*.png")) and not os.path.exists("figure.pdf")


def test_cli_compare_exits_with_a_one_line_error(two_runs):
    result = subprocess.run(
        [sys.executable, "-m", "tfpvae.plot", f"--compare={','.join(two_runs)}",
         "--which=loss_curves"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "tfpvae.plot: error: --compare draws only the comparison figure; drop "
        "--which (or drop --compare to draw the figures of one model).")


def test_a_figure_stopped_while_saving_leaves_the_previous_one(tmp_path,
                                                               monkeypatch,
                                                               capsys):
    # Ctrl-C while a PNG is being written: the file keeps the last figure,
    # whole, and `python -m tfpvae.plot` ends in one line with exit 130.
    from matplotlib.backends import backend_agg  # pylint: disable=import-outside-toplevel
    path = str(tmp_path / "loss_curves.png")
    fig = plots.loss_curves_figure(RUN_A)
    plots.save_figure(fig, path)
    with open(path, "rb") as f:
        before = f.read()

    print_png = backend_agg.FigureCanvasAgg.print_png

    def stopped(self, target, **kwargs):  # Half the bytes, then the signal.
        drawn = io.BytesIO()  # (A tight bbox's dry run ends in here.)
        print_png(self, drawn, **{k: v for k, v in kwargs.items()
                                  if k in ("metadata", "pil_kwargs")})
        half = drawn.getvalue()[:len(drawn.getvalue()) // 2]
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as out:
                out.write(half)
        else:
            target.write(half)
        raise KeyboardInterrupt
    monkeypatch.setattr(backend_agg.FigureCanvasAgg, "print_png", stopped)
    with pytest.raises(KeyboardInterrupt):
        plots.save_figure(fig, path)
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.listdir(tmp_path) == ["loss_curves.png"]

    monkeypatch.setattr(plot, "run", lambda: plots.save_figure(fig, path))
    assert exit_code(lambda: plot.main(["plot"])) == 130
    assert capsys.readouterr().err == (
        "tfpvae.plot: stopped; the figures finished before it are written, "
        "and no figure is left half-written.\n")
