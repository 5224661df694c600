"""Priors p(z) over the latent space.

Every prior is a `tf.Module` whose call returns a `tfd.Distribution` with
event shape `[latent_dim]`; its trainable variables belong to the model.

* ``normal``: the standard normal N(0, I). The KL term against a diagonal
  Gaussian posterior has a closed form (`tfd.kl_divergence`).
* ``mixture``: a learned mixture of K diagonal Gaussians,
  p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), as in the TensorFlow
  Probability VAE example. No closed-form KL: use kl="mc".
* ``vamp``: the VampPrior, p(z) = 1/K sum_k q(z | u_k): the mixture of the
  encoder's posteriors at K learned pseudo-inputs u_k [1]. No closed-form KL.

#### References
[1] Tomczak, J. M. and Welling, M. VAE with a VampPrior. AISTATS 2018.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class NormalPrior(tf.Module):
    """Standard normal prior N(0, I)."""
    key = "normal"
    has_analytic_kl = True

    def __init__(self, latent_dim: int, name=None):
        super().__init__(name=name)
        self.latent_dim = latent_dim

    def __call__(self) -> tfd.Distribution:
        return tfd.MultivariateNormalDiag(
            loc=tf.zeros([self.latent_dim]), scale_diag=tf.ones([self.latent_dim]))

    def config(self):
        return {}


class MixturePrior(tf.Module):
    """Learned mixture of `components` diagonal Gaussians.

    Args:
        latent_dim: Dimension of z.
        components: Number of mixture components K.
        seed: Seed of the initial component means (drawn from N(0, I)).
    """
    key = "mixture"
    has_analytic_kl = False

    def __init__(self, latent_dim: int, components: int = 10, seed: int = 0,
                 name=None):
        super().__init__(name=name)
        if components < 1:
            raise ValueError(f"mixture_components must be >= 1; got {components}.")
        self.latent_dim, self.components = latent_dim, components
        self.loc = tf.Variable(
            tf.random.stateless_normal([components, latent_dim], seed=[seed, 1]),
            name="loc")
        self.raw_scale = tf.Variable(
            tf.fill([components, latent_dim], math.log(math.expm1(1.0))),
            name="raw_scale")
        self.mixture_logits = tf.Variable(tf.zeros([components]),
                                          name="mixture_logits")

    def __call__(self) -> tfd.Distribution:
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=self.mixture_logits),
            components_distribution=tfd.MultivariateNormalDiag(
                loc=self.loc, scale_diag=tf.nn.softplus(self.raw_scale) + 1e-5))

    def config(self):
        return {"components": self.components}


class VampPrior(tf.Module):
    """VampPrior: uniform mixture of q(z|u_k) at learned pseudo-inputs u_k.

    Args:
        latent_dim: Dimension of z.
        data_shape: Shape of one example (the pseudo-inputs have this shape).
        encode: The model's base posterior `x -> tfd.MultivariateNormalDiag`.
        components: Number of pseudo-inputs K.
        seed: Seed of the initial pseudo-inputs (uniform on [0, 1]); use
            `init_from_data` to start them at training examples instead.
    """
    key = "vamp"
    has_analytic_kl = False

    def __init__(self, latent_dim: int, data_shape: Sequence[int],
                 encode: Callable[[tf.Tensor], tfd.Distribution],
                 components: int = 500, seed: int = 0, name=None):
        super().__init__(name=name)
        if components < 1:
            raise ValueError(f"mixture_components must be >= 1; got {components}.")
        self.latent_dim, self.components = latent_dim, components
        self._encode = encode
        self.pseudo_inputs = tf.Variable(
            tf.random.stateless_uniform([components, *data_shape], seed=[seed, 2]),
            name="pseudo_inputs")

    def init_from_data(self, x) -> None:
        """Sets the pseudo-inputs to the first K examples of `x`."""
        x = tf.convert_to_tensor(x, tf.float32)[: self.components]
        if x.shape[0] < self.components:
            raise ValueError(f"Need {self.components} examples to initialise the "
                             f"VampPrior; got {x.shape[0]}.")
        self.pseudo_inputs.assign(x)

    def __call__(self) -> tfd.Distribution:
        q = self._encode(self.pseudo_inputs)  # batch [K], event [latent_dim]
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=tf.zeros([self.components])),
            components_distribution=q)

    def config(self):
        return {"components": self.components}


PRIORS = {cls.key: cls for cls in (NormalPrior, MixturePrior, VampPrior)}
