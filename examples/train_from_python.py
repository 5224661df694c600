"""Train a VAE from Python, two ways: your own loop, or tfpvae's trainer.

    python examples/train_from_python.py --dataset=sklearn_digits --steps=300
    python examples/train_from_python.py --how=trainer --model_dir=/tmp/vae
    python examples/train_from_python.py --dataset=../shared/data/mnist --steps=50

--how=loop (the default) writes the whole training loop in a dozen lines with
the library API: `load_dataset`, `make_train_dataset`, `tfpvae.VAE` and
`VAE.loss`. This is the place to start when you want to change the loop.

--how=trainer makes one call to `train.train_and_evaluate`, the function
behind `python -m tfpvae.main`: checkpoints, evaluation, TensorBoard logs and
resuming come with it, and `tfpvae.load(model_dir)` gives the model back.
"""

import argparse

import tensorflow as tf
import tf_keras

import tfpvae
from tfpvae import data
from tfpvae import train
from tfpvae.config import TrainConfig


def train_with_own_loop(args):
    """Loads the data, builds the model and runs a plain training loop."""
    # Binary pixels for the Bernoulli likelihood: a fresh binary sample of
    # every batch ("dynamic binarization"); the valid split is binarized once.
    ds = data.load_dataset(args.dataset, binarize="dynamic", seed=args.seed)
    print(ds.summary())
    batches = data.make_train_dataset(ds, args.batch_size, seed=args.seed,
                                      binarize="dynamic")

    model = tfpvae.VAE(latent_dim=args.latent_dim, data_shape=ds.data_shape,
                       likelihood="bernoulli", hidden_units=(256, 256),
                       seed=args.seed)
    optimizer = tf_keras.optimizers.Adam(learning_rate=1e-3)

    @tf.function
    def train_step(x, seed):
        with tf.GradientTape() as tape:
            # loss = -mean ELBO over the batch; terms holds [B] tensors.
            loss, terms = model.loss(x, kl="analytic", seed=seed)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, tf.reduce_mean(terms.rate)

    step = 0
    while step < args.steps:
        for x in batches:  # One iteration over `batches` is one epoch.
            loss, rate = train_step(x, tf.constant([args.seed, step]))
            step += 1
            if step % 100 == 0 or step == args.steps:
                print(f"step {step}: loss {float(loss):.2f} nats, "
                      f"rate {float(rate):.2f} nats")
            if step == args.steps:
                break

    # The held-out bounds: the ELBO and the IWAE bound with k samples.
    x_valid = ds.splits["valid"][:500]
    elbo = tf.reduce_mean(model.elbo(x_valid, seed=0).elbo)
    log_px = tf.reduce_mean(model.log_likelihood(x_valid, k=args.eval_k, seed=0))
    print(f"valid ELBO {float(elbo):.2f}, IWAE_{args.eval_k} {float(log_px):.2f} "
          f"nats")
    return model


def train_with_trainer(args):
    """One call: what `python -m tfpvae.main` does, configured in Python."""
    config = TrainConfig(
        dataset=args.dataset, likelihood="bernoulli", binarize="dynamic",
        latent_dim=args.latent_dim, hidden_units=(256, 256),
        batch_size=args.batch_size, max_steps=args.steps, seed=args.seed,
        eval_k=args.eval_k, log_every=100,
        jit_compile=args.jit_compile)  # TrainConfig reads true/false/auto.
    metrics = train.train_and_evaluate(config, args.model_dir)
    print(f"valid ELBO {metrics['eval_elbo']:.2f}, IWAE_{args.eval_k} "
          f"{metrics['eval_iwae']:.2f} nats; saved in {args.model_dir}")
    return tfpvae.load(args.model_dir)  # The trained model, from its checkpoint.


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--how", choices=("loop", "trainer"), default="loop",
                        help="Your own loop, or train.train_and_evaluate.")
    parser.add_argument("--dataset", default="sklearn_digits",
                        help="sklearn_digits (offline), a tfds name, or a local "
                             "file/folder (see docs/howto/own_data.md).")
    parser.add_argument("--steps", type=int, default=1000,
                        help="Training steps.")
    parser.add_argument("--latent_dim", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--eval_k", type=int, default=100,
                        help="Importance samples of the held-out IWAE bound.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model_dir", default="runs/train_from_python",
                        help="Run directory (--how=trainer only).")
    parser.add_argument("--jit_compile", choices=("auto", "true", "false"),
                        default="auto",
                        help="XLA-compile the training step, as the CLI flag "
                             "(--how=trainer only; auto: where it was "
                             "measured faster).")
    args = parser.parse_args(argv)

    if args.how == "loop":
        model = train_with_own_loop(args)
    else:
        model = train_with_trainer(args)
    samples = model.sample(4, seed=0)  # [4, *data_shape]
    print(f"drew samples of shape {samples.shape.as_list()}")
    return model


if __name__ == "__main__":
    main()
