"""Observation models p(x|z): which distribution the decoder parameterises.

Each likelihood turns the decoder's output `params [..., *data_shape, P]` into
`tfd.Independent(..., reinterpreted_batch_ndims=len(data_shape))`, so that
`log_prob(x)` sums over all data dimensions and returns one number per example.

* ``bernoulli``: `tfd.Bernoulli(logits)`. For binary data (binarized MNIST).
  Using it on grayscale pixels is the "cross-entropy on non-binary pixels"
  mistake of many tutorials: the loss is then not a log-likelihood of anything
  normalised, and the trainer refuses non-binary data for it.
* ``continuous_bernoulli``: `tfd.ContinuousBernoulli(logits)`, the properly
  normalised density on [0, 1] (Loaiza-Ganem & Cunningham, 2019): the
  principled answer for grayscale images with values in [0, 1].
* ``gaussian``: `tfd.Normal(loc, scale)`. With a fixed scale sigma,
  `-log p(x|z) = ||x - loc||^2 / (2 sigma^2) + const`, i.e. the squared-error
  loss of the tutorials is a fixed-scale Gaussian (sigma = 1/sqrt(2) makes it
  exactly the summed squared error plus a constant). With `scale="learned"`
  one trainable scale per data dimension is learned (floored at `min_scale`
  so that constant dimensions cannot drive the density to infinity);
  with `scale="decoder"` the decoder predicts a per-example scale.

#### References
[1] Loaiza-Ganem, G. and Cunningham, J. P. The continuous Bernoulli: fixing a
    pervasive error in variational autoencoders. NeurIPS 2019.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Likelihood(tf.Module):
    """Base class: maps decoder parameters to a distribution over x."""

    #: Parameters the decoder outputs per data dimension.
    num_params: int = 1
    #: Whether data must lie in {0, 1} ("binary"), [0, 1] ("unit") or anywhere.
    support: str = "real"

    def __init__(self, data_shape: Sequence[int], name=None):
        super().__init__(name=name)
        self.data_shape = tuple(int(d) for d in data_shape)

    def __call__(self, params: tf.Tensor) -> tfd.Distribution:
        """Returns p(x|z) for decoder output `params [..., *data_shape, P]`."""
        return tfd.Independent(self._distribution(params),
                               reinterpreted_batch_ndims=len(self.data_shape))

    def _distribution(self, params):
        raise NotImplementedError  # Every registered subclass implements it.

    def check_data(self, x: np.ndarray) -> None:
        """Raises ValueError when `x` lies outside this likelihood's support."""
        x = np.asarray(x)
        if self.support == "binary" and not np.all((x == 0) | (x == 1)):
            raise ValueError(
                f"likelihood={self.key!r} needs binary data in {{0, 1}} but the "
                f"data has values in [{x.min():.3g}, {x.max():.3g}]; binarize it "
                f"(--binarize=dynamic or static) or use "
                f"likelihood='continuous_bernoulli' for grayscale data.")
        if self.support == "unit" and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"likelihood={self.key!r} needs data in [0, 1] but the data has "
                f"values in [{x.min():.3g}, {x.max():.3g}]; rescale it or use "
                f"likelihood='gaussian'.")

    def config(self) -> dict:
        return {}


class _Bernoulli(tfd.Bernoulli):
    """`tfd.Bernoulli` with a cheaper log_prob for finite logits.

    log p(x) = x * logits - softplus(logits): one softplus per pixel where
    `tfd.Bernoulli` evaluates two softplus terms and two masked products,
    ~5-10% of an MLP VAE's training step (docs/performance.md).
    """

    def _log_prob(self, event):
        logits = tf.convert_to_tensor(self._logits)
        return tf.cast(event, logits.dtype) * logits - tf.math.softplus(logits)


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels parameterised by logits (binary data)."""
    key = "bernoulli"
    support = "binary"

    def _distribution(self, params):
        # A squeeze rather than params[..., 0]: its gradient is a reshape.
        return _Bernoulli(logits=tf.squeeze(params, -1), dtype=tf.float32)


class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli on [0, 1], the normalised density for grayscale."""
    key = "continuous_bernoulli"
    support = "unit"

    def _distribution(self, params):
        return tfd.ContinuousBernoulli(logits=params[..., 0])


class GaussianLikelihood(Likelihood):
    """Independent Normal with a fixed, learned or decoder-predicted scale.

    Args:
        data_shape: Shape of one example.
        scale: A positive float (fixed scale: squared-error loss), "learned"
            (one trainable scale per data dimension) or "decoder" (the decoder
            outputs a scale per example and dimension).
        min_scale: Floor added to learned and decoder scales.
    """
    key = "gaussian"

    def __init__(self, data_shape, scale="learned", min_scale=1e-3, name=None):
        super().__init__(data_shape, name=name)
        self.scale = scale
        self.min_scale = float(min_scale)
        self.num_params = 2 if scale == "decoder" else 1
        if scale == "learned":
            self.raw_scale = tf.Variable(
                tf.fill(self.data_shape, _softplus_inverse(1.0)),
                name="raw_scale")
        elif scale != "decoder":
            try:
                value = float(scale)
            except (TypeError, ValueError):
                value = -1.0
            if not value > 0:
                raise ValueError(
                    f"Gaussian scale must be a positive number, 'learned' or "
                    f"'decoder'; got {scale!r}.")
            self.scale = value

    def _distribution(self, params):
        loc = params[..., 0]
        if self.scale == "learned":
            scale = tf.nn.softplus(self.raw_scale) + self.min_scale
        elif self.scale == "decoder":
            scale = tf.nn.softplus(params[..., 1]) + self.min_scale
        else:
            scale = tf.constant(self.scale, tf.float32)
        return tfd.Normal(loc=loc, scale=tf.broadcast_to(scale, tf.shape(loc)))

    def config(self):
        return {"scale": self.scale, "min_scale": self.min_scale}


def _softplus_inverse(y: float) -> float:
    return float(math.log(math.expm1(y)))


LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.key: cls for cls in (BernoulliLikelihood, ContinuousBernoulliLikelihood,
                             GaussianLikelihood)
}


def make_likelihood(name: str, data_shape, **kwargs) -> Likelihood:
    """Builds the likelihood registered under `name`."""
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"Unknown likelihood {name!r}; choose one of "
                         f"{sorted(LIKELIHOODS)}.") from None
    return cls(data_shape, **kwargs)
