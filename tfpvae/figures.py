"""Figures of a trained model: what it learned, drawn as PNG files.

(`tfpvae.plots` is this module's earlier name.)

Every figure is built with matplotlib's object-oriented API on the Agg canvas
(no pyplot, no global state), at `DPI` dots per inch, so a figure of
`figsize` inches is a PNG of `figsize * DPI` pixels. The figure functions
return `matplotlib.figure.Figure` objects; `plot_training_run` writes the
named figures of a model to `<model_dir>/plots/`:

* loss_curves: loss_curves.png, train and valid -ELBO, rate and distortion
  per epoch (from history.jsonl);
* latent_space: posterior means of a data split colored by label, in
  latent_space.png (latent_dim <= 2), else projected in latent_space_pca.png
  and latent_space_tsne.png;
* manifold: manifold_linear.png and manifold_inverse_cdf.png, decoder means
  on a 2-D grid of z;
* traversal: traversal_dim{i}.png, decoder means while z[i] sweeps -3..3,
  the rest fixed;
* traversal_grid: traversals.png, the same traversals in one figure, one row
  per dimension (the figure of Higgins et al. 2017 and of the
  disentanglement papers);
* grid_dims: grid_dims_{i}_{j}.png, the linear grid over latent dimensions
  i and j, the rest fixed;
* decoded_z: decoded_z.png, the decoder mean and draws at one given z;
* reconstructions: reconstructions.png, inputs over the decoder means and
  draws of their reconstructions;
* prior_samples: prior_samples.png, decoder means and draws for z ~ p(z);
* class_samples: class_samples.png (a model with labels), one row per class,
  the same draws of z in every row;
* analogies: analogies.png (a model with labels), each input's posterior
  mean decoded as every class (Kingma et al. 2014, fig. 1);
* confusion_matrix: confusion_matrix.png (the semi-supervised model), its
  classifier's confusion matrix on the split;
* layer_samples: layer_samples.png (several latent layers), the top layer
  fixed per row and the layers below drawn afresh per column.

The figures that are not for a model (class_samples of a model without
labels, say) are skipped with a log line.

`compare_runs_figure` draws the held-out bound of several runs side by side
(`python -m tfpvae.plot --compare=DIR,DIR,...`).

The manifold grids follow Kingma & Welling (2014, fig. 4): the linear grid
spans z in [-3, 3]; the inverse-CDF grid places z at the standard normal
quantiles Phi^-1(p) of evenly spaced probabilities p in [0.05, 0.95], so each
cell covers the same prior mass. For latent_dim > 2 the grids span two chosen
dimensions (`PlotOptions.dims`, default the first two) with the others fixed
(`PlotOptions.fix`, default zeros). Latent dimensions are counted from 0.

Image figures need image data ([H, W, C]; C = 1 is drawn in gray, C = 3 or 4
in color); for tabular data they are skipped with a log line, and the loss
curves and latent space are still drawn.

#### References
[1] Kingma, D. P. and Welling, M. Auto-encoding variational Bayes. ICLR 2014.
[2] van der Maaten, L. and Hinton, G. Visualizing data using t-SNE. JMLR 2008.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from absl import logging
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfpvae.data import Dataset
from tfpvae.images import image_grid
from tfpvae import run_dir
from tfpvae.models import LatentVariableModel

tfd = tfp.distributions

#: Resolution of every PNG.
DPI = 100
#: Subfolder of the model directory that receives the figures.
PLOTS_SUBDIR = run_dir.PLOTS_SUBDIR
#: File of per-evaluation training records (one JSON object per line).
HISTORY_FILE = run_dir.HISTORY_FILE
#: At most this many dimensions get a traversal figure by default.
MAX_DEFAULT_TRAVERSALS = 10
#: Held-out bounds `compare_runs_figure` can draw -> their short names.
COMPARE_METRICS = {"eval_iwae": "IWAE", "eval_elbo": "ELBO"}
#: By default `compare_runs_figure` shows this many nats below the best value.
COMPARE_ZOOM_NATS = 15.0

_PAD_VALUE = 1.0  # White lines between tiled images.
_ENCODE_BATCH = 1000


# --------------------------------------------------------------------------
# Options.

@dataclasses.dataclass
class PlotOptions:
    """What to draw, beyond the model and the data.

    Attributes:
        split: Data split of the latent space, reconstructions and
            `traverse_from` (default: the dataset's `eval_split`).
        seed: Seed of every random draw and subsample.
        dims: The two latent dimensions of the manifold and `grid_dims`
            grids (default (0, 1)).
        fix: Values of all `latent_dim` coordinates off the grid (entries at
            `dims` are ignored); default zeros. Also the base point of the
            traversals unless `traverse_from` is given.
        z: One latent vector (length `latent_dim`) for `decoded_z`.
        traverse_dims: Dimensions to traverse (default: all, or the
            `MAX_DEFAULT_TRAVERSALS` with the largest posterior-mean variance).
        traverse_from: Index of an example of `split` whose posterior mean is
            the base point of the traversals.
        grid_size: Cells per side of the manifold grids.
        traverse_steps: Images per traversal.
        num_examples: Examples shown by `reconstructions`.
        num_samples: Prior samples shown (a square grid of means and draws).
        max_points: At most this many points in a latent-space scatter.
        tsne_points: At most this many points embedded by t-SNE.
        label: The class of the images generated from z (manifolds,
            traversals, decoded_z) by a model with labels.
    """

    split: str | None = None
    seed: int = 0
    dims: tuple[int, int] | None = None
    fix: tuple[float, ...] | None = None
    z: tuple[float, ...] | None = None
    traverse_dims: tuple[int, ...] | None = None
    traverse_from: int | None = None
    grid_size: int = 15
    traverse_steps: int = 11
    num_examples: int = 10
    num_samples: int = 64
    max_points: int = 5000
    tsne_points: int = 1500
    label: int = 0

    def validate(self, latent_dim: int) -> None:
        """Raises ValueError for options that do not fit the model."""

        def check_dims(name, values):
            bad = [d for d in values if not 0 <= d < latent_dim]
            if bad:
                raise ValueError(f"{name} {bad} out of range: latent dimensions are "
                                 f"0..{latent_dim - 1}.")

        if self.dims is not None:
            if len(self.dims) != 2 or self.dims[0] == self.dims[1]:
                raise ValueError(f"dims must be two different latent dimensions; "
                                 f"got {list(self.dims)}.")
            check_dims("dims", self.dims)
        for name in ("fix", "z"):
            value = getattr(self, name)
            if value is not None and len(value) != latent_dim:
                raise ValueError(f"{name} has {len(value)} values; the model has "
                                 f"latent_dim={latent_dim}.")
        if self.traverse_dims is not None:
            check_dims("traverse_dims", self.traverse_dims)
        if self.label < 0:
            raise ValueError(f"label must be >= 0; got {self.label}.")
        for name in ("grid_size", "traverse_steps", "num_examples",
                     "num_samples", "max_points", "tsne_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")


# --------------------------------------------------------------------------
# Figure functions.

def loss_curves_figure(history: Sequence[dict]) -> Figure:
    """Train and validation loss (negative ELBO), rate and distortion.

    Args:
        history: Training records (`read_history`), each with `epoch` (or
            `step`) and some of `train_elbo`/`train_loss`, `eval_elbo`,
            `eval_iwae` (with `eval_k`), `{train,eval}_rate`,
            `{train,eval}_distortion` (see `tfpvae.train`), and with several
            latent layers `eval_rate_layer<l>` (drawn in the rate panel);
            missing or None values are left out.

    Returns:
        A figure with three panels sharing the x axis.
    """
    x_key = "epoch" if any("epoch" in r for r in history) else "step"
    eval_k = next((r["eval_k"] for r in reversed(history) if r.get("eval_k")), None)
    iwae_label = f"valid -IWAE (k={eval_k})" if eval_k else "valid -IWAE"
    panels = [
        ("Loss (negative ELBO)", "nats per example", [
            ("train", "train", lambda r: _negated(r, "train_elbo", "train_loss")),
            ("valid", "eval", lambda r: _negated(r, "eval_elbo", "eval_loss")),
            (iwae_label, "iwae", lambda r: _negated(r, "eval_iwae", None))]),
        ("Rate KL(q(z|x) || p(z))", "nats per example", [
            ("train", "train", lambda r: r.get("train_rate")),
            ("valid", "eval", lambda r: r.get("eval_rate"))]),
        ("Distortion -E_q log p(x|z)", "nats per example", [
            ("train", "train", lambda r: r.get("train_distortion")),
            ("valid", "eval", lambda r: r.get("eval_distortion"))]),
    ]
    layers = sorted({int(k[len("eval_rate_layer"):]) for r in history for k in r
                     if k.startswith("eval_rate_layer")})
    panels[1][2].extend(
        (f"valid, layer {layer}", f"layer{layer}",
         lambda r, layer=layer: r.get(f"eval_rate_layer{layer}"))
        for layer in layers)
    styles = {"train": dict(color="tab:blue"), "eval": dict(color="tab:orange"),
              "iwae": dict(color="tab:green", linestyle="--"),
              **{f"layer{layer}": dict(linestyle=":", linewidth=1)
                 for layer in layers}}
    fig = _new_figure((13, 4.2))
    axes = fig.subplots(1, 3, sharex=True)
    for ax, (title, ylabel, series) in zip(axes, panels):
        for label, style, value in series:
            points = [(r[x_key], value(r)) for r in history
                      if x_key in r and value(r) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 30 else None,
                        markersize=3, **styles[style])
        ax.set_title(title)
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.suptitle("Training curves")
    return fig


def compare_runs_figure(histories: Mapping[str, Sequence[dict]],
                        metric: str = "eval_iwae", *,
                        ymin: float | None = None) -> Figure:
    """The held-out bound of several runs, by epoch and by training time.

    One line per run: the left panel against the epoch, the right one against
    the training time in hours (`elapsed`). A dot marks each run's best value;
    the legend gives it. The early epochs lie far below the end of training
    (around -200 nats against -90 on binarized MNIST), so by default the y
    axis starts `COMPARE_ZOOM_NATS` below the best value of all runs, or just
    below the worst run's best value if that is lower, so every best value is
    shown.

    Args:
        histories: Run label -> its training records (`read_history`), each
            with `epoch` (or `step`), `elapsed` (seconds), the metric and, for
            `eval_iwae`, `eval_k`. Records whose metric is missing or None
            are skipped; so are records without `elapsed` in the right panel.
        metric: A key of `COMPARE_METRICS`: "eval_iwae" or "eval_elbo".
        ymin: Lower limit of the y axis in nats (default: zoomed as above).

    Returns:
        A figure of two panels sharing the y axis (nats per example).

    Raises:
        ValueError: For an unknown metric, no runs, no run with any value
            of the metric, or a `ymin` above every value.
    """
    if metric not in COMPARE_METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose from "
                         f"{list(COMPARE_METRICS)}.")
    if not histories:
        raise ValueError("No runs to compare.")
    runs = {label: [r for r in records if r.get(metric) is not None]
            for label, records in histories.items()}
    if not any(runs.values()):
        raise ValueError(f"No run has a value of {metric}: "
                         f"{', '.join(map(str, histories))}.")
    name = COMPARE_METRICS[metric]
    if metric == "eval_iwae":
        ks = {r["eval_k"] for records in runs.values() for r in records
              if r.get("eval_k")}
        name = f"IWAE_{ks.pop()}" if len(ks) == 1 else (
            "IWAE_k" + (" (k: " + ", ".join(map(str, sorted(ks))) + ")"
                        if ks else ""))
    x_key = "epoch" if any("epoch" in r for records in runs.values()
                           for r in records) else "step"

    fig = _new_figure((13, 5))
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    bests = []
    for i, (label, records) in enumerate(runs.items()):
        color = colormaps["tab10"](i % 10)
        if not records:  # Still only in the legend.
            by_epoch.plot([], [], color=color, label=f"{label} (no {metric})")
            continue
        best = max(records, key=lambda r: r[metric])
        bests.append(best[metric])
        for ax, x_of in ((by_epoch, lambda r: r.get(x_key)),
                         (by_time, lambda r: None if r.get("elapsed") is None
                          else r["elapsed"] / 3600.0)):
            points = [(x_of(r), r[metric]) for r in records
                      if x_of(r) is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=color, linewidth=1.2,
                    marker="o" if len(xs) <= 30 else None, markersize=2.5,
                    label=f"{label} (best {best[metric]:.2f})")
            if x_of(best) is not None:
                ax.plot([x_of(best)], [best[metric]], "o", color=color,
                        markersize=7, markeredgecolor="black", zorder=3)

    top, lowest_best = max(bests), min(bests)
    values = [r[metric] for records in runs.values() for r in records]
    if ymin is None:
        ymin = min(top - COMPARE_ZOOM_NATS, lowest_best - 1.0)
        ymin = max(ymin, min(values) - 0.5)  # No empty band below the data.
    elif ymin >= top:
        raise ValueError(f"ymin={ymin:g} is not below the best {metric} "
                         f"({top:.2f}); nothing would be shown.")
    by_epoch.set_ylim(ymin, top + max(0.5, 0.05 * (top - ymin)))
    by_epoch.set_title(f"held-out {name} by {x_key}")
    by_epoch.set_xlabel(x_key)
    by_epoch.set_ylabel(f"held-out {name} (nats per example)")
    by_time.set_title(f"held-out {name} by training time")
    by_time.set_xlabel("training time (hours)")
    if not by_time.lines:
        by_time.text(0.5, 0.5, "no training time (elapsed) recorded",
                     ha="center", va="center", transform=by_time.transAxes)
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3)
    by_epoch.legend(loc="lower right", fontsize="small")
    fig.suptitle(f"Held-out {name} of {len(runs)} run"
                 f"{'s' if len(runs) != 1 else ''} (higher is better)")
    return fig


def latent_space_figure(points: np.ndarray, labels: np.ndarray | None = None, *,
                        title: str, axis_labels: tuple[str, str],
                        label_names: Sequence[str] | None = None) -> Figure:
    """A scatter of 2-D (or 1-D) latent points, colored by label.

    Args:
        points: `[N, 2]` coordinates, or `[N, 1]` (drawn against a random
            vertical jitter).
        labels: `[N]` integer labels, or None for an uncolored scatter.
        title: Figure title.
        axis_labels: Labels of the x and y axes.
        label_names: Names of the labels, indexed by label value.

    Returns:
        The figure; with labels it has a colorbar naming the classes.
    """
    points = np.asarray(points, np.float32)
    one_dimensional = points.shape[1] == 1
    if one_dimensional:
        jitter = np.random.default_rng(0).uniform(-1, 1, len(points))
        points = np.stack([points[:, 0], jitter], axis=1)
    fig = _new_figure((7.5, 6.5))
    ax = fig.add_subplot()
    style = dict(s=6, alpha=0.7, linewidths=0)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], color="tab:blue", **style)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        if len(classes) <= 20:
            palette = "tab10" if len(classes) <= 10 else "tab20"
            cmap = mcolors.ListedColormap(
                colormaps[palette].colors[:len(classes)])
            norm = mcolors.BoundaryNorm(np.arange(len(classes) + 1) - 0.5,
                                        len(classes))
            index = np.searchsorted(classes, labels)
            scatter = ax.scatter(points[:, 0], points[:, 1], c=index, cmap=cmap,
                                 norm=norm, **style)
            colorbar = fig.colorbar(scatter, ax=ax, ticks=np.arange(len(classes)))
            colorbar.ax.set_yticklabels(
                [str(label_names[c]) if label_names is not None
                 and 0 <= c < len(label_names) else str(c) for c in classes])
        else:
            scatter = ax.scatter(points[:, 0], points[:, 1], c=labels,
                                 cmap="viridis", **style)
            colorbar = fig.colorbar(scatter, ax=ax)
        colorbar.set_label("label")
    ax.set_title(title)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if one_dimensional:
        ax.set_yticks([])
    return fig


def manifold_values(grid: str, n: int) -> np.ndarray:
    """The z values of a manifold grid axis, ascending.

    Args:
        grid: "linear" (n points evenly spaced in [-3, 3]) or "inverse_cdf"
            (standard normal quantiles of n probabilities evenly spaced in
            [0.05, 0.95]).
        n: Points per axis.

    Returns:
        A float32 array [n].
    """
    if grid == "linear":
        return np.linspace(-3.0, 3.0, n, dtype=np.float32)
    if grid == "inverse_cdf":
        probs = np.linspace(0.05, 0.95, n, dtype=np.float32)
        return tfd.Normal(0.0, 1.0).quantile(probs).numpy()
    raise ValueError(f"Unknown grid {grid!r}; choose 'linear' or 'inverse_cdf'.")


def manifold_figure(model: LatentVariableModel, values: np.ndarray, *, dims=(0, 1),
                    base: np.ndarray | None = None, title: str,
                    label: int = 0) -> Figure:
    """Decoder means on a square grid of latent points.

    Column j has z[dims[0]] = values[j]; row i (from the top) has
    z[dims[1]] = values[-1 - i], so the vertical axis increases upwards.

    Args:
        model: The VAE (image data, latent_dim >= 2).
        values: `[n]` z values of both grid axes, ascending.
        dims: The two latent dimensions spanned.
        base: `[latent_dim]` values of the other dimensions (default zeros).
        title: Figure title.
        label: The class decoded, for a model with labels.
    """
    values = np.asarray(values, np.float32)
    n = len(values)
    z = np.tile(_base_point(model, base), (n, n, 1))  # [rows, cols, latent]
    z[:, :, dims[0]] = values[None, :]
    z[:, :, dims[1]] = values[::-1, None]
    images = _decoder_mean(model, z.reshape(n * n, -1), label)
    fig = _new_figure((8, 8.4))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=n)
    _tick_cells(ax, "x", images.shape[2], [f"{v:.2f}" for v in values])
    _tick_cells(ax, "y", images.shape[1], [f"{v:.2f}" for v in values[::-1]])
    ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title(title)
    return fig


def traversal_figure(model: LatentVariableModel, dim: int, values: np.ndarray, base: np.ndarray,
                     *, base_description: str, label: int = 0) -> Figure:
    """Decoder means while z[dim] sweeps `values`, the rest fixed at `base`.

    Args:
        model: The VAE (image data).
        dim: The latent dimension traversed.
        values: `[n]` values of z[dim].
        base: `[latent_dim]` values of the other dimensions.
        base_description: What `base` is, for the title (e.g. "at 0").
        label: The class decoded, for a model with labels.
    """
    values = np.asarray(values, np.float32)
    z = np.tile(np.asarray(base, np.float32), (len(values), 1))
    z[:, dim] = values
    images = _decoder_mean(model, z, label)
    width = max(6.0, 0.8 * len(values) + 1.0)
    fig = _new_figure((width, (width - 1.0) / len(values) + 1.0))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=len(values))
    _tick_cells(ax, "x", images.shape[2], [f"{v:.2f}" for v in values])
    ax.set_xlabel(f"z[{dim}]")
    ax.set_ylabel("decoder mean")
    ax.set_title(f"Traversal of z[{dim}], other dimensions {base_description}")
    return fig


def traversal_grid_figure(model: LatentVariableModel, dims: Sequence[int],
                          values: np.ndarray, base: np.ndarray, *,
                          base_description: str, label: int = 0) -> Figure:
    """Row i: decoder means while z[dims[i]] sweeps `values`, the rest at
    `base` (one `traversal_figure` per row, in one picture).

    Args:
        model: The VAE (image data).
        dims: The latent dimensions traversed, one row each.
        values: `[n]` values of the traversed dimension.
        base: `[latent_dim]` values of the other dimensions.
        base_description: What `base` is, for the title (e.g. "at 0").
        label: The class decoded, for a model with labels.
    """
    values = np.asarray(values, np.float32)
    dims = list(dims)
    z = np.tile(np.asarray(base, np.float32), (len(dims), len(values), 1))
    for row, dim in enumerate(dims):
        z[row, :, dim] = values
    images = _decoder_mean(model, z.reshape(-1, z.shape[-1]), label)
    width = max(6.0, 0.8 * len(values) + 1.0)
    cell = (width - 1.0) / len(values)
    fig = _new_figure((width, cell * len(dims) + 1.2))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=len(values))
    _tick_cells(ax, "x", images.shape[2], [f"{v:.2f}" for v in values])
    _tick_cells(ax, "y", images.shape[1], [f"z[{d}]" for d in dims])
    ax.set_xlabel("value of the traversed dimension")
    ax.set_title(f"Traversals, other dimensions {base_description}")
    return fig


def decoded_z_figure(model: LatentVariableModel, z: Sequence[float], *, num_draws: int = 3,
                     seed: int = 0, label: int = 0) -> Figure:
    """The decoder mean of p(x|z) at one latent vector, beside draws from it.

    Args:
        model: The VAE (image data).
        z: One latent vector `[latent_dim]`.
        num_draws: Draws x ~ p(x|z) shown after the mean.
        seed: Seed of the draws.
        label: The class decoded, for a model with labels.
    """
    z = np.asarray(z, np.float32)[None]  # [1, latent]
    decoded = model.decode_top(z, _labels(model, 1, label))
    draws = tf.cast(decoded.sample(num_draws, seed=_stateless(seed)), tf.float32)
    images = np.concatenate([decoded.mean().numpy(), draws.numpy()[:, 0]], axis=0)
    width = max(6.0, 1.6 * len(images))
    fig = _new_figure((width, (width - 1.0) / len(images) + 1.0))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=len(images))
    _tick_cells(ax, "x", images.shape[2],
                ["mean"] + [f"draw {i + 1}" for i in range(num_draws)])
    ax.set_xlabel("p(x|z)")
    ax.set_ylabel("image")
    ax.set_title("Decoded z = (" + ", ".join(f"{v:g}" for v in z[0]) + ")",
                 wrap=True)
    return fig


def reconstructions_figure(model: LatentVariableModel, x: np.ndarray, *, seed: int = 0,
                           split: str = "valid", labels=None) -> Figure:
    """Inputs above their reconstructions: decoder mean and a draw at z ~ q(z|x).

    Both reconstructions of an example share one posterior draw z.

    Args:
        model: The VAE (image data).
        x: `[n, H, W, C]` inputs.
        seed: Seed of the posterior draw and of the decoder draw.
        split: Name of the split, for the title.
        labels: The labels of x, for a model conditioned on them.
    """
    mean = model.reconstruct(x, seed=seed, mean=True, labels=labels).numpy()
    draw = model.reconstruct(x, seed=seed, mean=False, labels=labels).numpy()
    images = np.concatenate([x, mean, draw], axis=0)  # Row-major: 3 rows.
    n = len(x)
    fig = _new_figure((max(6.0, 0.9 * n + 2.0), 3.8))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=n)
    _tick_cells(ax, "y", images.shape[1], ["input", "mean", "draw"])
    _tick_cells(ax, "x", images.shape[2], [str(i) for i in range(n)])
    ax.set_xlabel(f"{split} example")
    ax.set_ylabel("reconstruction")
    ax.set_title(f"Reconstructions: input, decoder mean and a draw from p(x|z), "
                 f"z ~ q(z|x)")
    return fig


def prior_samples_figure(model: LatentVariableModel, n: int = 64, *, seed: int = 0) -> Figure:
    """Samples of the model: decoder means and draws for the same z ~ p(z)
    (a model with labels cycles through its classes).

    Args:
        model: The VAE (image data).
        n: Number of latent draws (shown as a near-square grid).
        seed: Seed of z and of the decoder draws.
    """
    labels = np.arange(n) % model.num_classes if model.num_classes else None
    # The same seed draws the same z for both calls (see `VAE.sample`).
    panels = [("decoder means E[x|z]", model.sample(n, seed=seed, mean=True,
                                                     labels=labels)),
              ("draws x ~ p(x|z)", model.sample(n, seed=seed, mean=False,
                                                labels=labels))]
    cols = int(np.ceil(np.sqrt(n)))
    fig = _new_figure((12, 6.6))
    for ax, (title, images) in zip(fig.subplots(1, 2), panels):
        _show_tiled(ax, images.numpy(), cols=cols)
        ax.set_title(title)
        ax.set_xlabel(f"{n} samples, z ~ p(z)")
        ax.set_ylabel("sample")
    fig.suptitle("Samples from the prior")
    return fig


def class_samples_figure(model: LatentVariableModel, n: int = 10, *,
                         seed: int = 0) -> Figure:
    """One row per class: decoder means of the same n draws z ~ p(z) (one
    per column), decoded with each class, so a column shows one "style".

    Args:
        model: A model with labels (image data).
        n: Draws of z (columns).
        seed: Seed of the draws.
    """
    classes = model.num_classes
    z = model.prior.sample(n, seed=_stateless(seed))
    z_all = tf.nest.map_structure(lambda t: tf.tile(t, [classes, 1]), z)
    labels = np.repeat(np.arange(classes), n)
    images = model.decode(z_all, labels).mean().numpy()
    fig = _new_figure((max(6.0, 0.8 * n + 1.5), 0.8 * classes + 1.2))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=n)
    _tick_cells(ax, "y", images.shape[1], [str(c) for c in range(classes)])
    ax.set_xlabel("z ~ p(z), the same in every row")
    ax.set_ylabel("class")
    ax.set_title("Class-conditional samples: decoder means E[x|z, y]")
    return fig


def analogies_figure(model: LatentVariableModel, x: np.ndarray, labels=None,
                     *, split: str = "valid") -> Figure:
    """Analogies (Kingma et al. 2014, fig. 1): each input's posterior mean z
    (its "style") decoded with every class, one row per input.

    Args:
        model: A model with labels (image data).
        x: `[n, H, W, C]` inputs.
        labels: Their classes: a conditional model needs them; the
            semi-supervised model infers the style with them too, and with
            its classifier's guess when they are None.
        split: Name of the split, for the title.
    """
    classes, n = model.num_classes, len(x)
    # The style is q(z|x, y) of the input's own class: with the classifier's
    # guess instead, a misread input's style would carry its class.
    z = model.posterior_mean(x, labels).numpy()
    decoded = model.decode_top(np.repeat(z, classes, axis=0),
                               np.tile(np.arange(classes), n)).mean().numpy()
    rows = decoded.reshape((n, classes) + decoded.shape[1:])
    images = np.concatenate([np.asarray(x, np.float32)[:, None], rows], axis=1)
    images = images.reshape((-1,) + images.shape[2:])
    fig = _new_figure((0.8 * (classes + 1) + 1.5, 0.8 * n + 1.2))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=classes + 1)
    _tick_cells(ax, "x", images.shape[2],
                ["input"] + [str(c) for c in range(classes)])
    ax.set_xlabel("class decoded")
    ax.set_ylabel(f"{split} example")
    ax.set_title("Analogies: the style z of each input, decoded as every class")
    return fig


def confusion_matrix_figure(model: LatentVariableModel, x: np.ndarray,
                            labels: np.ndarray, *,
                            split: str = "valid") -> Figure:
    """The confusion matrix of the classifier q(y|x) of a semi-supervised
    model: counts of (true class, argmax q(y|x)).

    Args:
        model: A model with `classify(x) -> tfd.Categorical`.
        x: `[N, ...]` inputs.
        labels: `[N]` their classes.
        split: Name of the split, for the title.
    """
    guesses = np.concatenate([
        np.argmax(model.classify(x[i:i + _ENCODE_BATCH]).logits.numpy(), -1)
        for i in range(0, len(x), _ENCODE_BATCH)])
    classes = model.num_classes
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (np.asarray(labels), guesses), 1)
    error = 1.0 - np.trace(counts) / max(counts.sum(), 1)
    fig = _new_figure((0.5 * classes + 3, 0.5 * classes + 2.5))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > counts.max() / 2 else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted class (argmax q(y|x))")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix on {len(x)} {split} examples, error "
                 f"{100 * error:.1f}%")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def layer_samples_figure(model: LatentVariableModel, rows: int = 6,
                         draws: int = 7, *, seed: int = 0) -> Figure:
    """What each layer controls: one row per draw of the top layer
    z_L ~ p(z_L); the first column decodes it with the lower layers at their
    prior means, the others with the lower layers drawn afresh.

    Args:
        model: A model with several latent layers (image data).
        rows: Draws of the top layer.
        draws: Draws of the lower layers per row.
        seed: Seed of every draw.
    """
    z = model.prior.sample(rows, seed=_stateless(seed))
    top = z[sorted(z, key=lambda k: int(k[1:]))[-1]] if isinstance(z, dict) else z
    labels = _labels(model, rows, 0)
    columns = [model.decode_top(top, labels).mean().numpy()]
    columns += [model.decode_top(top, labels, lower="sample",
                                 seed=[seed, i + 1]).mean().numpy()
                for i in range(draws)]
    images = np.stack(columns, axis=1).reshape((-1,) + columns[0].shape[1:])
    fig = _new_figure((0.8 * (draws + 1) + 1.5, 0.8 * rows + 1.2))
    ax = fig.add_subplot()
    _show_tiled(ax, images, cols=draws + 1)
    _tick_cells(ax, "x", images.shape[2],
                ["means"] + [f"draw {i + 1}" for i in range(draws)])
    ax.set_xlabel("the layers below the top: at their means, then drawn")
    ax.set_ylabel("z_top ~ p(z_top)")
    ax.set_title("What the top layer fixes and the lower layers vary")
    return fig


def save_figure(fig: Figure, path: str) -> str:
    """Writes `fig` as a PNG with the Agg canvas and returns the path.

    The file is replaced whole (`run_dir.write_bytes_atomic`): an
    interrupted or failed save leaves the previous figure, not part of a
    new one."""
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    run_dir.write_bytes_atomic(path, png.getvalue())
    return path


def read_history(model_dir: str) -> list[dict]:
    """Returns the records of `<model_dir>/history.jsonl` (none if absent).

    A line that is not valid JSON (a record still being written) is skipped.
    """
    return run_dir.read_history(model_dir)


# --------------------------------------------------------------------------
# Writing the figures of a model directory.

@dataclasses.dataclass
class _PlotRun:
    """Everything the writers share; caches the posterior means."""

    model: LatentVariableModel
    dataset: Dataset | None
    model_dir: str
    out_dir: str
    options: PlotOptions
    _means: np.ndarray | None = None

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def is_image(self) -> bool:
        return len(self.model.data_shape) == 3 and (
            self.dataset is None or self.dataset.kind == "image")

    @property
    def split(self) -> str:
        if self.options.split is not None:
            return self.options.split
        return self.dataset.eval_split if self.dataset is not None else "valid"

    def data(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The split's examples and labels (labels None when absent)."""
        if self.split not in self.dataset.splits:
            raise ValueError(f"The dataset has no split {self.split!r}; it has "
                             f"{sorted(self.dataset.splits)}.")
        return self.dataset.splits[self.split], self.dataset.labels.get(self.split)

    def encoder_labels(self, labels):
        """The labels for the encoder of a model that reads them, else None."""
        return labels if self.model.conditions_on_labels else None

    def posterior_means(self) -> np.ndarray:
        """`[N, latent_dim]` posterior means of the split."""
        if self._means is None:
            x, labels = self.data()
            labels = self.encoder_labels(labels)
            self._means = np.concatenate(
                [self.model.posterior_mean(
                    x[i:i + _ENCODE_BATCH],
                    None if labels is None else labels[i:i + _ENCODE_BATCH]
                ).numpy() for i in range(0, len(x), _ENCODE_BATCH)], axis=0)
        return self._means

    def save(self, fig: Figure, name: str) -> str:
        return save_figure(fig, os.path.join(self.out_dir, name + ".png"))

    def skip(self, name: str, reason: str) -> list[str]:
        logging.info("Skipping the %s plot: %s.", name, reason)
        return []


def _write_loss_curves(run: _PlotRun) -> list[str]:
    history = read_history(run.model_dir)
    if not history:
        return run.skip("loss_curves", f"no records in "
                        f"{os.path.join(run.model_dir, HISTORY_FILE)}")
    return [run.save(loss_curves_figure(history), "loss_curves")]


def _write_latent_space(run: _PlotRun) -> list[str]:
    if run.dataset is None:
        return run.skip("latent_space", "no dataset")
    _, labels = run.data()
    means = run.posterior_means()
    rng = np.random.default_rng(run.options.seed)
    keep = rng.permutation(len(means))[:run.options.max_points]
    means = means[keep]
    labels = labels[keep] if labels is not None else None
    names = run.dataset.label_names
    what = f"Posterior means E_q[z|x] of {len(means)} {run.split} examples"
    if run.latent_dim <= 2:
        axis_labels = ("z[0]", "z[1]" if run.latent_dim == 2 else "random jitter")
        fig = latent_space_figure(means, labels, title=what,
                                  axis_labels=axis_labels, label_names=names)
        return [run.save(fig, "latent_space")]

    # scikit-learn is slow to import and needed only here.
    from sklearn.decomposition import PCA  # pylint: disable=import-outside-toplevel
    from sklearn.manifold import TSNE  # pylint: disable=import-outside-toplevel

    pca = PCA(n_components=2).fit(means)
    explained = pca.explained_variance_ratio_
    fig = latent_space_figure(
        pca.transform(means), labels, label_names=names,
        title=f"{what}, PCA of {run.latent_dim} dimensions",
        axis_labels=tuple(f"principal component {i + 1} ({100 * r:.0f}% of "
                          f"variance)" for i, r in enumerate(explained)))
    paths = [run.save(fig, "latent_space_pca")]
    m = min(len(means), run.options.tsne_points)
    if m < 5:
        return paths + run.skip("latent_space_tsne", f"only {m} examples")
    embedded = TSNE(n_components=2, perplexity=min(30.0, (m - 1) / 3.0),
                    init="pca", random_state=run.options.seed).fit_transform(means[:m])
    fig = latent_space_figure(
        embedded, labels[:m] if labels is not None else None, label_names=names,
        title=f"Posterior means of {m} {run.split} examples, t-SNE of "
              f"{run.latent_dim} dimensions",
        axis_labels=("t-SNE 1", "t-SNE 2"))
    return paths + [run.save(fig, "latent_space_tsne")]


def _grid_dims(run: _PlotRun) -> tuple[int, int]:
    return tuple(run.options.dims) if run.options.dims is not None else (0, 1)


def _fixed_description(run: _PlotRun, dims: Sequence[int]) -> str:
    others = [d for d in range(run.latent_dim) if d not in dims]
    if not others:
        return ""
    if run.options.fix is None:
        return ", other dimensions at 0"
    if len(others) > 6:
        return ", other dimensions fixed by --fix"
    return ", " + ", ".join(f"z[{d}]={run.options.fix[d]:g}" for d in others)


def _write_manifold(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("manifold", "the data are not images")
    if run.latent_dim < 2:
        return run.skip("manifold", "it needs latent_dim >= 2 (see traversal)")
    dims = _grid_dims(run)
    fixed = _fixed_description(run, dims)
    titles = {"linear": "Generated images on a linear grid of z",
              "inverse_cdf": "Generated images on a grid of normal quantiles of "
                             "p = 0.05..0.95"}
    return [run.save(manifold_figure(
        run.model, manifold_values(grid, run.options.grid_size), dims=dims,
        base=run.options.fix, title=titles[grid] + fixed,
        label=run.options.label), f"manifold_{grid}")
        for grid in ("linear", "inverse_cdf")]


def _write_grid_dims(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("grid_dims", "the data are not images")
    if run.latent_dim < 2:
        return run.skip("grid_dims", "it needs latent_dim >= 2")
    dims = _grid_dims(run)
    fig = manifold_figure(
        run.model, manifold_values("linear", run.options.grid_size), dims=dims,
        base=run.options.fix, label=run.options.label,
        title=f"Generated images over z[{dims[0]}], z[{dims[1]}]"
              + _fixed_description(run, dims))
    return [run.save(fig, f"grid_dims_{dims[0]}_{dims[1]}")]


def _traverse_dims(run: _PlotRun) -> list[int]:
    if run.options.traverse_dims is not None:
        return list(run.options.traverse_dims)
    if run.latent_dim <= MAX_DEFAULT_TRAVERSALS:
        return list(range(run.latent_dim))
    if run.dataset is None:
        return list(range(MAX_DEFAULT_TRAVERSALS))
    variances = np.var(run.posterior_means(), axis=0)
    most_active = np.argsort(-variances, kind="stable")[:MAX_DEFAULT_TRAVERSALS]
    return sorted(int(d) for d in most_active)


def _traversal_base(run: _PlotRun) -> tuple[np.ndarray, str]:
    """The point the traversals start from, and its description."""
    index = run.options.traverse_from
    if index is not None:
        x, _ = run.data()
        if not 0 <= index < len(x):
            raise ValueError(f"traverse_from={index} is not an example index of "
                             f"the {run.split} split (0..{len(x) - 1}).")
        _, labels = run.data()
        labels = run.encoder_labels(labels)
        base = run.model.posterior_mean(
            x[index:index + 1],
            None if labels is None else labels[index:index + 1]).numpy()[0]
        description = f"at the encoding of {run.split} example {index}"
    else:
        base = _base_point(run.model, run.options.fix)
        description = "at 0" if run.options.fix is None else "fixed by --fix"
    return base, description


def _write_traversals(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("traversal", "the data are not images")
    base, description = _traversal_base(run)
    values = manifold_values("linear", run.options.traverse_steps)
    return [run.save(traversal_figure(run.model, d, values, base,
                                      base_description=description,
                                      label=run.options.label),
                     f"traversal_dim{d}") for d in _traverse_dims(run)]


def _write_traversal_grid(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("traversal_grid", "the data are not images")
    base, description = _traversal_base(run)
    values = manifold_values("linear", run.options.traverse_steps)
    return [run.save(traversal_grid_figure(run.model, _traverse_dims(run),
                                           values, base,
                                           base_description=description,
                                           label=run.options.label),
                     "traversals")]


def _write_decoded_z(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("decoded_z", "the data are not images")
    return [run.save(decoded_z_figure(run.model, run.options.z,
                                      seed=run.options.seed,
                                      label=run.options.label), "decoded_z")]


def _write_reconstructions(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("reconstructions", "the data are not images")
    if run.dataset is None:
        return run.skip("reconstructions", "no dataset")
    x, labels = run.data()
    n = run.options.num_examples
    labels = run.encoder_labels(labels)
    fig = reconstructions_figure(run.model, x[:n], seed=run.options.seed,
                                 split=run.split,
                                 labels=None if labels is None else labels[:n])
    return [run.save(fig, "reconstructions")]


def _write_prior_samples(run: _PlotRun) -> list[str]:
    if not run.is_image:
        return run.skip("prior_samples", "the data are not images")
    fig = prior_samples_figure(run.model, run.options.num_samples,
                               seed=run.options.seed)
    return [run.save(fig, "prior_samples")]


def _write_class_samples(run: _PlotRun) -> list[str]:
    if not run.model.num_classes:
        return run.skip("class_samples", "the model has no labels")
    if not run.is_image:
        return run.skip("class_samples", "the data are not images")
    return [run.save(class_samples_figure(run.model, seed=run.options.seed),
                     "class_samples")]


def _write_analogies(run: _PlotRun) -> list[str]:
    if not run.model.num_classes:
        return run.skip("analogies", "the model has no labels")
    if not run.is_image or run.dataset is None:
        return run.skip("analogies", "the data are not images, or no dataset")
    x, labels = run.data()
    n = run.options.num_examples
    fig = analogies_figure(run.model, x[:n],
                           None if labels is None else labels[:n],
                           split=run.split)
    return [run.save(fig, "analogies")]


def _write_confusion_matrix(run: _PlotRun) -> list[str]:
    if not hasattr(run.model, "classify"):
        return run.skip("confusion_matrix", "the model has no classifier")
    if run.dataset is None or run.data()[1] is None:
        return run.skip("confusion_matrix", "no labelled data")
    x, labels = run.data()
    return [run.save(confusion_matrix_figure(run.model, x, labels,
                                             split=run.split),
                     "confusion_matrix")]


def _write_layer_samples(run: _PlotRun) -> list[str]:
    if len(run.model.latent_sizes) < 2:
        return run.skip("layer_samples", "the model has one latent layer")
    if not run.is_image:
        return run.skip("layer_samples", "the data are not images")
    return [run.save(layer_samples_figure(run.model, seed=run.options.seed),
                     "layer_samples")]


#: The figures by name, in drawing order: name -> writer(run) -> paths.
PLOTS: dict[str, Callable[[_PlotRun], list[str]]] = {
    "loss_curves": _write_loss_curves,
    "latent_space": _write_latent_space,
    "manifold": _write_manifold,
    "traversal": _write_traversals,
    "traversal_grid": _write_traversal_grid,
    "grid_dims": _write_grid_dims,
    "decoded_z": _write_decoded_z,
    "reconstructions": _write_reconstructions,
    "prior_samples": _write_prior_samples,
    "class_samples": _write_class_samples,
    "analogies": _write_analogies,
    "confusion_matrix": _write_confusion_matrix,
    "layer_samples": _write_layer_samples,
}

#: Plots that read the dataset.
DATA_PLOTS = ("latent_space", "traversal", "traversal_grid", "reconstructions",
              "analogies", "confusion_matrix")


def resolve_plot_names(which: str | Sequence[str], latent_dim: int,
                       options: PlotOptions) -> list[str]:
    """Expands "all" and checks the names.

    "all" means every plot that needs no extra input: `decoded_z` only when
    `options.z` is given, `grid_dims` only when `options.dims` is given and
    latent_dim > 2 (for two dimensions it is `manifold_linear`).

    Raises:
        ValueError: For an unknown name, or `decoded_z` without `options.z`.
    """
    which = [which] if isinstance(which, str) else list(which)
    unknown = [w for w in which if w != "all" and w not in PLOTS]
    if unknown or not which:
        raise ValueError(f"Unknown plot name(s) {unknown}; choose from "
                         f"{['all'] + list(PLOTS)}.")
    if "all" in which:
        wanted = set(PLOTS) - {"decoded_z", "grid_dims"}
        if options.z is not None:
            wanted.add("decoded_z")
        if options.dims is not None and latent_dim > 2:
            wanted.add("grid_dims")
    else:
        wanted = set(which)
    if "decoded_z" in wanted and options.z is None:
        raise ValueError("The decoded_z plot needs a latent vector (--z).")
    return [name for name in PLOTS if name in wanted]


def plot_training_run(model: LatentVariableModel, dataset: Dataset | None, model_dir: str,
                      which: str | Sequence[str] = "all",
                      options: PlotOptions | None = None) -> list[str]:
    """Draws the figures of a trained model into `<model_dir>/plots/`.

    Args:
        model: The trained VAE.
        dataset: Its data (for the latent space, reconstructions and
            traversals from an example); None skips those plots.
        model_dir: The run's directory (history.jsonl is read from it).
        which: "all" or names of `PLOTS`.
        options: Choices of dimensions, vectors and sizes.

    Returns:
        The paths of the PNG files written.

    Raises:
        ValueError: For unknown plot names or options that do not fit the
            model or the data.
    """
    options = options or PlotOptions()
    options.validate(model.latent_dim)
    names = resolve_plot_names(which, model.latent_dim, options)
    out_dir = os.path.join(model_dir, PLOTS_SUBDIR)
    os.makedirs(out_dir, exist_ok=True)
    run = _PlotRun(model=model, dataset=dataset, model_dir=model_dir,
                   out_dir=out_dir, options=options)
    paths = []
    for name in names:
        paths += PLOTS[name](run)
    logging.info("Wrote %d figures to %s: %s", len(paths), out_dir,
                 ", ".join(os.path.basename(p) for p in paths))
    return paths


# --------------------------------------------------------------------------
# Helpers.

def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _negated(record: dict, elbo_key: str, loss_key: str | None):
    """-record[elbo_key], else record[loss_key] (already a loss), else None."""
    if record.get(elbo_key) is not None:
        return -record[elbo_key]
    return record.get(loss_key) if loss_key else None


def _stateless(seed: int) -> tf.Tensor:
    return tf.constant([0, int(seed)], tf.int32)


def _base_point(model: LatentVariableModel, fix) -> np.ndarray:
    """`[latent_dim]`: the fixed values, or zeros."""
    if fix is None:
        return np.zeros(model.latent_dim, np.float32)
    return np.asarray(fix, np.float32)


def _labels(model: LatentVariableModel, n: int, label: int):
    """`[n]` copies of `label` for a model with labels, else None."""
    if not model.num_classes:
        return None
    if not 0 <= label < model.num_classes:
        raise ValueError(f"label={label} is not a class of this model "
                         f"(0..{model.num_classes - 1}).")
    return np.full(n, label, np.int32)


def _decoder_mean(model: LatentVariableModel, z: np.ndarray,
                  label: int = 0) -> np.ndarray:
    """`[N, H, W, C]` decoder means for z `[N, latent_dim]` (of class
    `label`, for a model with labels)."""
    return model.decode_top(z, _labels(model, len(z), label)).mean().numpy()


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image `[H, W, C]` clipped to [0, 1] as imshow wants it, with a colormap.

    One channel becomes `[H, W]` in gray; three or four are RGB(A); any
    other number of channels is shown as the channel mean in gray.
    """
    image = np.clip(image, 0.0, 1.0)
    channels = image.shape[-1]
    if channels in (3, 4):
        return image, None
    if channels == 1:
        return image[..., 0], "gray"
    return image.mean(axis=-1), "gray"


def _show_tiled(ax, images: np.ndarray, cols: int) -> None:
    """Draws `[N, H, W, C]` images row by row, `cols` per row, 1-pixel apart."""
    canvas, cmap = _display(image_grid(images, cols, pad=1, pad_value=_PAD_VALUE))
    ax.imshow(canvas, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _tick_cells(ax, axis: str, size: int, labels: Sequence[str]) -> None:
    """Puts one tick at the center of each tiled cell of `size` pixels."""
    centers = [i * (size + 1) + (size - 1) / 2 for i in range(len(labels))]
    if axis == "x":
        ax.set_xticks(centers, labels)
    else:
        ax.set_yticks(centers, labels)
    ax.tick_params(axis=axis, labelsize=8, length=2)
