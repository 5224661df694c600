"""A second model family: the linear-Gaussian latent-variable model.

    p(z) = N(0, I),   p(x|z) = N(W z + b, sigma^2 I),   q(z|x) = N(A x + c, diag(s^2))

Its marginal likelihood has a closed form, log p(x) = log N(x; b, W W^T +
sigma^2 I), so the tests can check what the trainer and the evaluator
report against the math. It is the worked example of
docs/howto/model_family.md, which shows this file.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfpvae
from tfpvae import models

tfd = tfp.distributions


@models.register
class LinearGaussian(tfpvae.LatentVariableModel):
    """Linear decoder and encoder, Gaussian noise; every parameter learned.

    Args:
        latent_dim: Size of z.
        data_shape: (D,): x is a vector.
        seed: Seed of the initial weights.
    """

    family = "linear_gaussian"

    def __init__(self, latent_dim: int, data_shape, seed: int = 0, name=None):
        super().__init__(data_shape, (latent_dim,), name=name)
        (dim,) = self.data_shape
        init = np.random.default_rng(seed)
        self.w = tf.Variable(init.normal(0, 0.1, (dim, latent_dim)),
                             dtype=tf.float32, name="w")
        self.b = tf.Variable(tf.zeros([dim]), name="b")
        self.log_sigma = tf.Variable(0.0, name="log_sigma")
        self.a = tf.Variable(init.normal(0, 0.1, (latent_dim, dim)),
                             dtype=tf.float32, name="a")
        self.c = tf.Variable(tf.zeros([latent_dim]), name="c")
        self.log_s = tf.Variable(tf.zeros([latent_dim]), name="log_s")
        self.seed = seed

    def encode(self, x, labels=None):
        x = self.check_x(x)
        self.check_labels(labels)
        loc = tf.matmul(x, self.a, transpose_b=True) + self.c
        return tfd.MultivariateNormalDiag(
            loc=loc, scale_diag=tf.broadcast_to(tf.exp(self.log_s),
                                                tf.shape(loc)))

    def decode(self, z, labels=None):
        loc = tf.linalg.matvec(self.w, z) + self.b  # [..., D]
        return tfd.MultivariateNormalDiag(
            loc=loc, scale_diag=tf.fill(tf.shape(loc), tf.exp(self.log_sigma)))

    @property
    def prior(self):
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim]))

    @property
    def has_analytic_kl(self) -> bool:
        return True  # Gaussian posterior, standard normal prior.

    def posterior_mean(self, x, labels=None):
        return self.encode(x, labels).mean()

    def get_config(self) -> dict:
        return {"family": self.family, "latent_dim": self.latent_dim,
                "data_shape": list(self.data_shape), "seed": self.seed}

    def marginal(self) -> tfd.Distribution:
        """p(x) in closed form: N(b, W W^T + sigma^2 I)."""
        dim = self.data_shape[0]
        covariance = (tf.matmul(self.w, self.w, transpose_b=True)
                      + tf.exp(2 * self.log_sigma) * tf.eye(dim))
        return tfd.MultivariateNormalTriL(
            loc=self.b, scale_tril=tf.linalg.cholesky(covariance))


def build(config, data_shape, num_classes=0):
    """The trainer's `build_model` for this family."""
    del num_classes
    return LinearGaussian(config.latent_dim, data_shape, seed=config.seed)
