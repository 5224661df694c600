"""Draw new images from a trained model and save them as one PNG grid.

Train a model first (a few seconds, offline), then sample from it:

    python -m tfpvae.main --dataset=sklearn_digits --epochs=20 --model_dir=runs/digits
    python examples/sample_from_checkpoint.py --model_dir=runs/digits --n=64

`tfpvae.load(model_dir)` rebuilds the VAE from `model_config.json` and
restores its latest checkpoint (`--best` takes the checkpoint with the best
held-out bound instead). `model.sample(n)` draws z ~ p(z) and then either
x ~ p(x|z) (binary images for a Bernoulli likelihood) or, with `--mean`, the
decoder mean E[x|z], which is the smoother picture most tutorials show.
"""

import argparse
import math

import matplotlib.image

import tfpvae
from tfpvae import figures as plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="A directory written by python -m tfpvae.main.")
    parser.add_argument("--n", type=int, default=64, help="Number of samples.")
    parser.add_argument("--mean", action="store_true",
                        help="Save decoder means E[x|z] instead of draws.")
    parser.add_argument("--best", action="store_true",
                        help="Load the best checkpoint (model_dir/best).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="samples.png",
                        help="PNG file to write.")
    args = parser.parse_args(argv)

    model = tfpvae.load(args.model_dir, best=args.best)
    if len(model.data_shape) != 3:
        parser.error(f"the model's data are vectors {model.data_shape}, not "
                     f"images; print model.sample(n) instead.")

    images = model.sample(args.n, seed=args.seed, mean=args.mean).numpy()
    # [n, H, W, C] -> one [rows * H, columns * W, C] picture.
    grid = plots.image_grid(images, columns=math.ceil(math.sqrt(args.n)))
    grid = grid.clip(0, 1)
    # Enlarge small images (8x8 digits) so that each is at least 56 pixels.
    scale = max(1, 56 // images.shape[1])
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    if grid.shape[-1] == 1:
        matplotlib.image.imsave(args.output, grid[..., 0], cmap="gray",
                                vmin=0, vmax=1)
    else:
        matplotlib.image.imsave(args.output, grid)
    print(f"wrote {args.n} samples of shape {images.shape[1:]} to {args.output}")
    return args.output


if __name__ == "__main__":
    main()
