"""Command line: draw the figures of a trained VAE into `<model_dir>/plots/`.

    python -m tfpvae.plot --model_dir=runs/mnist
    python -m tfpvae.plot --model_dir=runs/mnist --which=manifold,traversal \\
        --dims=1,2 --fix=0,1,1,1 --traverse_from=7
    python -m tfpvae.plot --model_dir=runs/mnist --which=decoded_z --z=0,1,0,0

The names of `--which` and the files they write are listed in
`tfpvae.plots`. Latent dimensions are counted from 0. The data (for the latent
space, reconstructions and traversals) are loaded as in the training run's
flags.json, or from `--dataset`.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from tfpvae import evaluate as evaluate_lib
from tfpvae import plots
from tfpvae import saving


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
    model_dir = flag_values.model_dir
    if not model_dir:
        raise ValueError("--model_dir is required.")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model_dir={model_dir} does not exist.")
    dims = _numbers(flag_values.dims, "dims", int)
    options = plots.PlotOptions(
        split=flag_values.split, seed=flag_values.seed,
        dims=dims, fix=_numbers(flag_values.fix, "fix"),
        z=_numbers(flag_values.z, "z"),
        traverse_dims=_numbers(flag_values.traverse_dims, "traverse_dims", int),
        traverse_from=flag_values.traverse_from, grid_size=flag_values.grid_size)
    model = saving.load(model_dir)
    # Check the names and options before loading the data.
    options.validate(model.latent_dim)
    names = plots.resolve_plot_names(flag_values.which, model.latent_dim, options)
    dataset = None
    if any(name in plots.DATA_PLOTS for name in names):
        dataset = evaluate_lib.load_run_dataset(model_dir, flag_values.dataset)
    return plots.plot_training_run(model, dataset, model_dir, names, options)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        paths = run()
    except (FileNotFoundError, ValueError) as e:  # DatasetError is a ValueError.
        sys.exit("tfpvae.plot: error: " + " ".join(str(e).split()))
    for path in paths:
        print(path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
