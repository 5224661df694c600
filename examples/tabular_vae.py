"""A VAE on a table of real-valued features, read from a CSV file.

    python examples/tabular_vae.py --epochs=50
    python examples/tabular_vae.py --table=wine --epochs=100 --output_dir=/tmp/wine
    python examples/tabular_vae.py --conditional --epochs=100

The script writes one of scikit-learn's bundled tables (the Wisconsin
breast-cancer data, 569 rows x 30 features, or the wine data, 178 x 13) to
a CSV file with a header row and a text label column, and trains on it
through the same path as the command line:

    python -m tfpvae.main --dataset=runs/tabular/breast_cancer.csv --label_column=diagnosis --likelihood=gaussian --latent_dim=2 --hidden_units=64 --validation_fraction=0.2 --batch_size=32 --epochs=50 --model_dir=runs/tabular/model

What changes for tabular data: the likelihood is `gaussian` (a Normal per
feature with a learned scale), the features are standardised with the train
split's mean and standard deviation (`--standardize`, on by default; the
statistics are kept in the `Dataset`), `--label_column` keeps a column out of
the features as labels (text labels are numbered in sorted order), and
`--validation_fraction` of the rows is held out for evaluation.

With `--conditional` the model is a conditional Gaussian VAE (Sohn et al.,
2015) on the label column, q(z|x, y) and p(x|z, y): its bound is on
log p(x|y), and `model.sample(n, labels=...)` draws rows of a chosen class;
the script compares each class's rows with rows drawn for that class.

Any CSV with a header row works the same way; the UCI SUSY physics data, for
example (a label, then 18 kinematic features per row), after adding a header
line `label,f1,...,f18`. The CSV reader holds the whole file in memory, so
convert a file of millions of rows to .npz first (docs/howto/own_data.md).
"""

import argparse
import csv
import os

import numpy as np
from sklearn import datasets

import tfpvae
from tfpvae import figures as plots
from tfpvae import train
from tfpvae.config import TrainConfig

TABLES = {"breast_cancer": datasets.load_breast_cancer,
          "wine": datasets.load_wine}


def write_csv(table: str, path: str) -> list[str]:
    """Writes a scikit-learn table as CSV: a header, features, then the label.

    Returns:
        The names of the feature columns.
    """
    bunch = TABLES[table]()
    header = [name.replace(" ", "_") for name in bunch.feature_names]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header + ["diagnosis" if table == "breast_cancer"
                                  else "cultivar"])
        for row, target in zip(bunch.data, bunch.target):
            writer.writerow([f"{v:.6g}" for v in row] + [bunch.target_names[target]])
    return header


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=sorted(TABLES), default="breast_cancer")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=0,
                        help="Training steps; overrides --epochs when > 0.")
    parser.add_argument("--latent_dim", type=int, default=2)
    parser.add_argument("--conditional", action="store_true",
                        help="Condition the model on the label column: "
                        "q(z|x, y) and p(x|z, y).")
    parser.add_argument("--eval_k", type=int, default=100,
                        help="Importance samples of the held-out IWAE bound.")
    parser.add_argument("--output_dir", default="runs/tabular",
                        help="Where the CSV, the model and the figure go.")
    parser.add_argument("--jit_compile", choices=("auto", "true", "false"),
                        default="auto",
                        help="XLA-compile the training step, as the CLI flag "
                             "(auto: where it was measured faster).")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)

    path = os.path.join(args.output_dir, args.table + ".csv")
    columns = write_csv(args.table, path)
    label = "diagnosis" if args.table == "breast_cancer" else "cultivar"
    config = TrainConfig(
        dataset=path, label_column=label, likelihood="gaussian",
        latent_dim=args.latent_dim, hidden_units=(64,), batch_size=32,
        validation_fraction=0.2, epochs=args.epochs, max_steps=args.steps,
        eval_k=args.eval_k, log_every=50, conditional=args.conditional,
        jit_compile=args.jit_compile)  # TrainConfig reads true/false/auto.
    model_dir = os.path.join(args.output_dir, "model")
    metrics = train.train_and_evaluate(config, model_dir)
    print(f"valid ELBO {metrics['eval_elbo']:.2f} nats, IWAE_{args.eval_k} "
          f"{metrics['eval_iwae']:.2f} nats per row (standardised features)")

    # The data as the trainer saw them: standardised, labels numbered.
    ds = train.load_data(config)
    model = tfpvae.load(model_dir)
    x, y = ds.splits["valid"], ds.labels["valid"]
    labels = y if args.conditional else None         # A conditional model needs them.
    recon = model.reconstruct(x, seed=0, labels=labels).numpy()  # Decoder means, [N, D].
    # Back to the units of the CSV with the stored train statistics.
    error = np.mean(np.abs(recon - x), axis=0) * ds.feature_std   # [D]
    for name, mean, err in list(zip(columns, ds.feature_mean, error))[:3]:
        print(f"{name}: mean {mean:.3g}, mean absolute reconstruction error "
              f"{err:.3g}")

    if args.conditional:
        # Rows drawn for each class against the class's own rows: the mean of
        # the first feature (in the CSV's units) of each.
        train_x, train_y = ds.splits["train"], ds.labels["train"]
        for k, name in enumerate(ds.label_names):
            drawn = model.sample(1000, seed=k, labels=np.full(1000, k)).numpy()
            unit = lambda v: v * ds.feature_std[0] + ds.feature_mean[0]
            print(f"{name}: {columns[0]} mean of its training rows "
                  f"{unit(train_x[train_y == k, 0].mean()):.3g}, of 1000 rows "
                  f"drawn for it {unit(drawn[:, 0].mean()):.3g}")

    means = model.posterior_mean(x, labels=labels).numpy()[:, :2]  # First two dimensions.
    axis_labels = ("z[0]", "z[1]" if means.shape[1] == 2 else "random jitter")
    fig = plots.latent_space_figure(
        means, y, label_names=ds.label_names, axis_labels=axis_labels,
        title=f"{args.table}: posterior means of the {len(x)} valid rows")
    figure = plots.save_figure(fig, os.path.join(args.output_dir, "latent_space.png"))
    print(f"wrote {figure}")
    return metrics


if __name__ == "__main__":
    main()
