"""Swap your own normalizing flow into the posterior q(z|x) and train it.

    python examples/custom_flow.py --steps=300
    python examples/custom_flow.py --flow=bijector --steps=300
    python examples/custom_flow.py --dataset=../shared/data/mnist --steps=50

`tfpvae.VAE(posterior_flow=...)` takes the name of a built-in flow ("iaf",
"maf", "realnvp") or your own, in one of two forms:

* a `tfb.Bijector`, applied to every posterior sample as it is
  (--flow=bijector: a learned shift and lower-triangular linear map,
  the same for every x, so q(z|x) gets correlated dimensions);
* a callable `context -> tfb.Bijector`, called on every encoding with the
  context vector h(x) the encoder emits when `flow_context_units > 0`
  (--flow=module: a shift and a lower-triangular map computed from h(x), so
  each x gets its own full-covariance Gaussian posterior).

Make the callable a `tf.Module`, as below, so that the VAE finds its
variables: they are then in `model.trainable_variables`, trained, and saved
with the model. A flow has no closed-form KL term: train with kl="mc".

The script prints how far the flow's variables moved during training, to
show that they train.
"""

import argparse

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfpvae
from tfpvae import data

tfb = tfp.bijectors


class ContextualLinearFlow(tf.Module):
    """z -> L(h) z + s(h), with L(h) lower triangular with a positive diagonal.

    h is the encoder's context vector [N, context_units]. Both maps start at
    zero output, so the flow starts as the identity (L = I, s = 0) and the
    model starts where the plain VAE starts.
    """

    def __init__(self, latent_dim: int, context_units: int, name=None):
        super().__init__(name=name)
        d = latent_dim
        self.shift_net = tf_keras.layers.Dense(d, kernel_initializer="zeros")
        self.tril_net = tf_keras.layers.Dense(d * (d + 1) // 2,
                                              kernel_initializer="zeros")
        self.shift_net.build((None, context_units))  # Create the variables now.
        self.tril_net.build((None, context_units))
        # Vector -> lower-triangular matrix; exp keeps the diagonal positive.
        self.fill_tril = tfb.FillScaleTriL(diag_bijector=tfb.Exp(),
                                           diag_shift=None)

    def __call__(self, context):                 # context: [N, context_units]
        shift = self.shift_net(context)          # [N, D]
        scale_tril = self.fill_tril(self.tril_net(context))  # [N, D, D]
        # Chain applies right to left: first the linear map, then the shift.
        return tfb.Chain([tfb.Shift(shift), tfb.ScaleMatvecTriL(scale_tril)])


def global_linear_flow(latent_dim: int) -> tfb.Bijector:
    """A plain bijector with trainable parameters: z -> L z + s for all x."""
    shift = tf.Variable(tf.zeros([latent_dim]), name="shift")
    scale_tril = tfp.util.TransformedVariable(
        tf.eye(latent_dim), tfb.FillScaleTriL(diag_bijector=tfb.Exp(),
                                              diag_shift=None),
        name="scale_tril")
    return tfb.Chain([tfb.Shift(shift), tfb.ScaleMatvecTriL(scale_tril)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flow", choices=("module", "bijector"),
                        default="module",
                        help="A tf.Module context -> Bijector, or a Bijector.")
    parser.add_argument("--dataset", default="sklearn_digits",
                        help="sklearn_digits (offline), a tfds name, or a local "
                             "file/folder.")
    parser.add_argument("--steps", type=int, default=500, help="Training steps.")
    parser.add_argument("--latent_dim", type=int, default=4)
    parser.add_argument("--context_units", type=int, default=16,
                        help="Size of h(x) (--flow=module).")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ds = data.load_dataset(args.dataset, binarize="dynamic", seed=args.seed)
    batches = data.make_train_dataset(ds, args.batch_size, seed=args.seed,
                                      binarize="dynamic")

    if args.flow == "module":
        flow = ContextualLinearFlow(args.latent_dim, args.context_units)
        context_units = args.context_units
    else:
        flow = global_linear_flow(args.latent_dim)
        context_units = 0  # A plain bijector takes no context.
    model = tfpvae.VAE(latent_dim=args.latent_dim, data_shape=ds.data_shape,
                       likelihood="bernoulli", hidden_units=(128,),
                       posterior_flow=flow, flow_context_units=context_units,
                       seed=args.seed)
    flow_variables = flow.trainable_variables
    model_variables = {v.ref() for v in model.trainable_variables}
    assert all(v.ref() in model_variables for v in flow_variables)
    print(f"the flow has {len(flow_variables)} variables, "
          f"{sum(int(np.prod(v.shape)) for v in flow_variables)} numbers, all "
          f"among the model's trainable variables")
    before = [v.numpy().copy() for v in flow_variables]

    optimizer = tf_keras.optimizers.Adam(learning_rate=1e-3)

    @tf.function
    def train_step(x, seed):
        with tf.GradientTape() as tape:
            loss, _ = model.loss(x, kl="mc", seed=seed)  # No closed-form KL.
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step = 0
    while step < args.steps:
        for x in batches:
            loss = train_step(x, tf.constant([args.seed, step]))
            step += 1
            if step % 100 == 0 or step == args.steps:
                print(f"step {step}: loss {float(loss):.2f} nats")
            if step == args.steps:
                break

    moved = max(float(np.max(np.abs(v.numpy() - b)))
                for v, b in zip(flow_variables, before))
    print(f"largest change of a flow parameter: {moved:.4f}")
    x_valid = ds.splits["valid"][:500]
    elbo = tf.reduce_mean(model.elbo(x_valid, kl="mc", n_samples=10, seed=0).elbo)
    print(f"valid ELBO {float(elbo):.2f} nats")
    # A model with a custom flow is saved and restored with a plain
    # checkpoint: rebuild it with the same code, then
    # tf.train.Checkpoint(model=model).restore(path).
    return moved


if __name__ == "__main__":
    main()
