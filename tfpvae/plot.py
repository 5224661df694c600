"""Command line: draw the figures of a trained model into `<model_dir>/plots/`.

    python -m tfpvae.plot --model_dir=runs/mnist
    python -m tfpvae.plot --model_dir=runs/mnist --which=manifold,traversal \\
        --dims=1,2 --fix=0,1,1,1 --traverse_from=7
    python -m tfpvae.plot --model_dir=runs/mnist --which=decoded_z --z=0,1,0,0
    python -m tfpvae.plot --compare=runs/mnist_vae,runs/mnist_vamp \\
        --metric=eval_iwae --output=runs/compare.png

The names of `--which` and the files they write are listed in
`tfpvae.figures`. Latent dimensions are counted from 0. The data (for the latent
space, reconstructions and traversals) are loaded as in the training run's
flags.json, or from `--dataset`.

`--compare` instead draws one figure of the held-out bound (`--metric`) of
several training runs, read from their history.jsonl, by epoch and by
training time (`tfpvae.figures.compare_runs_figure`). Each run is labelled by
its directory's name, less the prefix all of them share (e.g.
"binarized_mnist_"). The figure goes to `--output`, by default
`compare_<metric>.png` beside the first directory (in its parent); the path
is printed. `--compare` takes no `--model_dir` and none of the flags of the
single-model figures.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from tfpvae import evaluate as evaluate_lib
from tfpvae import figures as plots
from tfpvae import run_dir


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("model_dir", None, "Directory of a trained model.",
                        flag_values=flag_values)
    flags.DEFINE_list("which", ["all"],
                      f"Plots to draw: 'all' or names among {list(plots.PLOTS)}.",
                      flag_values=flag_values)
    flags.DEFINE_list("dims", None,
                      "Two latent dimensions spanned by the manifold and "
                      "grid_dims plots, e.g. 1,2 (default 0,1).",
                      flag_values=flag_values)
    flags.DEFINE_list("fix", None,
                      "Values of all latent dimensions off the grid (and the "
                      "base point of traversals), latent_dim numbers, e.g. "
                      "0,1,1,1 (default zeros).", flag_values=flag_values)
    flags.DEFINE_list("z", None, "A latent vector to decode (decoded_z), "
                      "latent_dim numbers.", flag_values=flag_values)
    flags.DEFINE_list("traverse_dims", None,
                      "Latent dimensions to traverse (default: all, at most "
                      f"the {plots.MAX_DEFAULT_TRAVERSALS} most active).",
                      flag_values=flag_values)
    flags.DEFINE_integer("label", 0,
                         "The class of the generated images (manifolds, "
                         "traversals, decoded_z) of a model with labels.",
                         flag_values=flag_values)
    flags.DEFINE_integer("traverse_from", None,
                         "Traverse around the encoding of this example of "
                         "--split (default: around --fix or zero).",
                         flag_values=flag_values)
    flags.DEFINE_enum("split", None, list(evaluate_lib.SPLITS),
                      "Data split shown (default: the dataset's eval split).",
                      flag_values=flag_values)
    flags.DEFINE_integer("grid_size", 15, "Cells per side of the manifold grids.",
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the random draws.",
                         flag_values=flag_values)
    flags.DEFINE_string("dataset", None,
                        "Data source overriding the one in flags.json.",
                        flag_values=flag_values)
    flags.DEFINE_boolean("best", False,
                         "Draw the checkpoint with the best held-out bound "
                         "(<model_dir>/best) instead of the latest one.",
                         flag_values=flag_values)
    flags.DEFINE_list("compare", None,
                      "Model directories of training runs to compare: draws "
                      "their held-out --metric by epoch and by training time "
                      "into --output instead of the figures of one model "
                      "(no --model_dir).", flag_values=flag_values)
    flags.DEFINE_string("output", None,
                        "PNG file of the --compare figure (default: "
                        "compare_<metric>.png in the parent of the first "
                        "--compare directory).", flag_values=flag_values)
    flags.DEFINE_enum("metric", "eval_iwae", list(plots.COMPARE_METRICS),
                      "Held-out bound drawn by --compare.",
                      flag_values=flag_values)


#: Flags of the single-model figures, refused together with --compare.
_MODEL_FLAGS = ("model_dir", "which", "dims", "fix", "z", "traverse_dims", "label",
                "traverse_from", "split", "grid_size", "seed", "dataset", "best")
#: Flags that only --compare uses.
_COMPARE_FLAGS = ("output", "metric")


def _numbers(values, name: str, kind=float):
    """Parses a list flag into a tuple of numbers (None stays None)."""
    if values is None:
        return None
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise ValueError(f"--{name}={','.join(values)} must be a comma-separated "
                         f"list of {kind.__name__}s.") from None


def run(flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Draws the plots the flags ask for.

    Returns:
        The paths of the PNG files written.

    Raises:
        FileNotFoundError, ValueError, DatasetError: For a missing model
            directory, bad flags or data that cannot be loaded.
    """
    if flag_values["compare"].present:
        return [compare(flag_values)]
    stray = [f"--{name}" for name in _COMPARE_FLAGS if flag_values[name].present]
    if stray:
        raise ValueError(f"{', '.join(stray)} only apply to --compare; add "
                         f"--compare=DIR,DIR,... or drop {', '.join(stray)}.")
    model_dir = flag_values.model_dir
    if not model_dir:
        raise ValueError("--model_dir is required (or --compare=DIR,DIR,... to "
                         "compare training runs).")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(run_dir.missing_model_dir(model_dir))
    dims = _numbers(flag_values.dims, "dims", int)
    options = plots.PlotOptions(
        split=flag_values.split, seed=flag_values.seed,
        dims=dims, fix=_numbers(flag_values.fix, "fix"),
        z=_numbers(flag_values.z, "z"),
        traverse_dims=_numbers(flag_values.traverse_dims, "traverse_dims", int),
        traverse_from=flag_values.traverse_from, grid_size=flag_values.grid_size,
        label=flag_values.label)
    model = run_dir.load(model_dir, best=flag_values.best)
    # Check the names and options before loading the data.
    options.validate(model.latent_dim)
    names = plots.resolve_plot_names(flag_values.which, model.latent_dim, options)
    dataset = None
    if any(name in plots.DATA_PLOTS for name in names):
        dataset = evaluate_lib.load_run_dataset(model_dir, flag_values.dataset)
    return plots.plot_training_run(model, dataset, model_dir, names, options)


def run_labels(model_dirs: list[str]) -> list[str]:
    """Labels of runs: their directories' names less a shared prefix.

    The prefix ends at a "_", "-" or "." (binarized_mnist_vae and
    binarized_mnist_vamp become vae and vamp) and is kept when there is only
    one directory or when it would leave a label empty. Directories of the
    same name are labelled by their whole paths.
    """
    names = [os.path.basename(os.path.normpath(d)) for d in model_dirs]
    if len(set(names)) < len(names):
        return [os.path.normpath(d) for d in model_dirs]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    cut = max(prefix.rfind(c) for c in "_-.") + 1
    if cut and all(len(n) > cut for n in names):
        names = [n[cut:] for n in names]
    return names


def compare(flag_values: flags.FlagValues = flags.FLAGS) -> str:
    """Draws the --compare figure and returns its path.

    Raises:
        FileNotFoundError, ValueError: For a directory without history.jsonl
            or bad flags.
    """
    stray = [f"--{name}" for name in _MODEL_FLAGS if flag_values[name].present]
    if stray:
        raise ValueError(f"--compare draws only the comparison figure; drop "
                         f"{', '.join(stray)} (or drop --compare to draw the "
                         f"figures of one model).")
    model_dirs = flag_values.compare
    if not model_dirs:
        raise ValueError("--compare needs model directories, e.g. "
                         "--compare=runs/a,runs/b.")
    if len({os.path.normpath(d) for d in model_dirs}) < len(model_dirs):
        raise ValueError(f"--compare={','.join(model_dirs)} names a directory "
                         f"twice; give each run once.")
    for model_dir in model_dirs:
        if not os.path.isfile(os.path.join(model_dir, plots.HISTORY_FILE)):
            what = ("does not exist" if not os.path.isdir(model_dir)
                    else f"has no {plots.HISTORY_FILE}")
            raise FileNotFoundError(
                f"--compare: {model_dir} {what}; give the directories of "
                f"training runs (the --model_dir of python -m tfpvae.main).")
    metric = flag_values.metric
    output = flag_values.output or os.path.normpath(os.path.join(
        model_dirs[0], os.pardir, f"compare_{metric}.png"))
    if not output.lower().endswith(".png"):
        raise ValueError(f"--output={output} must be a .png file.")
    histories = dict(zip(run_labels(model_dirs),
                         (plots.read_history(d) for d in model_dirs)))
    if not any(r.get(metric) is not None for h in histories.values() for r in h):
        other = [m for m in plots.COMPARE_METRICS if m != metric]
        raise ValueError(f"No record of {', '.join(model_dirs)} has a value of "
                         f"{metric}; wait for an evaluation or try "
                         f"--metric={other[0]}.")
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    return plots.save_figure(
        plots.compare_runs_figure(histories, metric), output)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    with run_dir.one_line_errors(
            "tfpvae.plot", "the figures finished before it are written, and "
            "no figure is left half-written."):
        paths = run()
    for path in paths:
        print(path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
