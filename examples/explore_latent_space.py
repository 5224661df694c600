"""Explore the latent space of a trained model: interpolation and traversals.

Train a model, then explore it:

    python -m tfpvae.main --dataset=sklearn_digits --latent_dim=4 --epochs=30 --model_dir=runs/digits4
    python examples/explore_latent_space.py --model_dir=runs/digits4 --a=0 --b=1

Writes three figures into --output_dir (default <model_dir>/explore):

* interpolation.png: example a, the decoder means along the straight line
  from a's encoding to b's, and example b;
* latent_path.png: the posterior means of the split (PCA when latent_dim > 2),
  colored by label, with that line drawn on top;
* traversal_dim{i}.png: one latent dimension swept from -3 to 3 around a's
  encoding, for the `--traverse` most active dimensions (largest variance of
  the posterior means over the data).

The figure functions come from `tfpvae.plots`; `python -m tfpvae.plot` draws
the standard set (manifold grids, traversals around 0, ...) in one command.
"""

import argparse
import os

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

import tfpvae
from tfpvae import evaluate
from tfpvae import figures as plots


def encode_means(model, x, batch_size=1000):
    """Posterior means E_q[z|x] `[N, latent_dim]`, in batches."""
    return np.concatenate([model.posterior_mean(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)])


def interpolation_figure(model, x_a, x_b, z_path):
    """x_a, the decoder means at the points of z_path, x_b, in one row."""
    decoded = model.decode(z_path).mean().numpy()            # [S, H, W, C]
    images = np.concatenate([x_a[None], decoded, x_b[None]])  # [S + 2, H, W, C]
    strip = plots.image_grid(np.clip(images, 0, 1), columns=len(images))
    fig = Figure(figsize=(1.0 * len(images), 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip,
              cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("a, decoded points of the line from z_a to z_b, b")
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="A directory written by python -m tfpvae.main.")
    parser.add_argument("--dataset", default=None,
                        help="Data source (default: the run's, from flags.json).")
    parser.add_argument("--split", default="valid", help="Split to explore.")
    parser.add_argument("--a", type=int, default=0, help="Index of example a.")
    parser.add_argument("--b", type=int, default=1, help="Index of example b.")
    parser.add_argument("--steps", type=int, default=8,
                        help="Points on the line from a to b.")
    parser.add_argument("--traverse", type=int, default=2,
                        help="Number of most active dimensions to traverse.")
    parser.add_argument("--max_points", type=int, default=2000,
                        help="Examples encoded for the scatter and activity.")
    parser.add_argument("--output_dir", default=None,
                        help="Where to write the PNGs (default model_dir/explore).")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or os.path.join(args.model_dir, "explore")
    os.makedirs(output_dir, exist_ok=True)

    model = tfpvae.load(args.model_dir)
    if len(model.data_shape) != 3:
        parser.error("this script draws images; the model's data are vectors")
    ds = evaluate.load_run_dataset(args.model_dir, args.dataset)
    x = ds.splits[args.split][:args.max_points]
    labels = ds.labels.get(args.split)
    labels = None if labels is None else labels[:args.max_points]
    means = encode_means(model, x)                            # [N, latent_dim]

    # 1. Interpolation: decode points on the segment between two encodings.
    t = np.linspace(0.0, 1.0, args.steps, dtype=np.float32)[:, None]
    z_path = (1 - t) * means[args.a] + t * means[args.b]      # [steps, latent]
    paths = [plots.save_figure(
        interpolation_figure(model, x[args.a], x[args.b], z_path),
        os.path.join(output_dir, "interpolation.png"))]

    # 2. Where that line runs among the encodings of the data.
    if model.latent_dim > 2:
        pca = PCA(n_components=2).fit(means)
        project, axis_labels = pca.transform, ("PCA 1", "PCA 2")
    else:
        project, axis_labels = (lambda z: z), ("z[0]", "z[1]")
    fig = plots.latent_space_figure(
        project(means), labels, label_names=ds.label_names,
        title=f"Posterior means of {len(x)} {args.split} examples, "
              f"and the line from a to b",
        axis_labels=axis_labels)
    if model.latent_dim == 1:
        fig.axes[0].set_ylabel("random jitter")
    else:
        line = project(z_path)
        fig.axes[0].plot(line[:, 0], line[:, 1], "k.-", linewidth=1)
    paths.append(plots.save_figure(fig, os.path.join(output_dir,
                                                     "latent_path.png")))

    # 3. Traversals around a's encoding, of the most active dimensions.
    variances = evaluate.posterior_mean_variances(means)
    for dim in np.argsort(-variances)[:args.traverse]:
        fig = plots.traversal_figure(
            model, int(dim), plots.manifold_values("linear", 9), means[args.a],
            base_description=f"at the encoding of example a ({args.a})")
        paths.append(plots.save_figure(
            fig, os.path.join(output_dir, f"traversal_dim{dim}.png")))
    print("\n".join(paths))
    return paths


if __name__ == "__main__":
    main()
