"""Normalizing flows that make the approximate posterior q(z|x) richer.

A flow posterior draws z0 from the encoder's diagonal Gaussian and pushes it
through K invertible layers f = f_K o ... o f_1, with a reversal permutation
between layers so that every coordinate gets to depend on every other:

    z_K = f(z0),   log q(z_K|x) = log q0(z0|x) - log |det df/dz0|.

The posterior is a `tfd.TransformedDistribution(base, bijector)`; the ELBO
uses `experimental_sample_and_log_prob`, which computes the log-density from
the forward log-determinant of the same pass (no inverse is ever evaluated).

* ``iaf``: inverse autoregressive flow [1], `tfb.Invert(MaskedAutoregressiveFlow)`.
  Its forward is the MAF's inverse: one parallel pass of the MADE network per
  layer, so sampling and log q of the sample together cost one pass. The MADE
  can be conditioned on a context vector h(x) from the encoder.
* ``maf``: masked autoregressive flow [2]. Its forward (sampling) is sequential:
  latent_dim passes of the network per layer. Correct but slow for sampling;
  prefer IAF for posteriors.
* ``realnvp``: affine coupling layers [3]; one pass both ways. Needs
  latent_dim >= 2.

Each layer's shift and log-scale are multiplied by a gate that starts at zero
(`identity_init=True`, the default), so a new flow posterior equals its base
and training starts from the plain VAE.

A user flow is either a `tfb.Bijector` (used as is) or a callable
`context -> tfb.Bijector`, where `context` is the encoder's context tensor
`[N, flow_context_units]` or None. Make the callable a `tf.Module` (or hold its
variables in one) so that its variables are trained and checkpointed.

#### References
[1] Kingma, D. P. et al. Improved variational inference with inverse
    autoregressive flow. NeurIPS 2016.
[2] Papamakarios, G., Pavlakou, T. and Murray, I. Masked autoregressive flow
    for density estimation. NeurIPS 2017.
[3] Dinh, L., Sohl-Dickstein, J. and Bengio, S. Density estimation using
    Real NVP. ICLR 2017.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfpvae.networks import get_activation

tfb = tfp.bijectors


class _Flow(tf.Module):
    """A stack of `num_layers` gated affine layers with reversals between."""

    def __init__(self, latent_dim: int, num_layers: int = 4,
                 hidden_units: Sequence[int] = (256, 256), context_dim: int = 0,
                 activation: str = "relu", identity_init: bool = True,
                 name=None):
        super().__init__(name=name)
        if num_layers < 1:
            raise ValueError(f"flow_layers must be >= 1; got {num_layers}.")
        self.latent_dim, self.num_layers = latent_dim, num_layers
        self.hidden_units = tuple(hidden_units)
        self.context_dim = context_dim
        self.activation = activation
        self.identity_init = identity_init
        gate_init = 0.0 if identity_init else 1.0
        self.networks = [self._make_network(i) for i in range(num_layers)]
        self.gates = [tf.Variable(tf.fill([2], gate_init), name=f"gate_{i}")
                      for i in range(num_layers)]
        # Build every network now so that all variables exist from the start.
        context = tf.zeros([1, context_dim]) if context_dim else None
        self(context).forward(tf.zeros([1, latent_dim]))

    def __call__(self, context: tf.Tensor | None = None) -> tfb.Bijector:
        """Returns the flow as a bijector, conditioned on `context` [N, C]."""
        if self.context_dim and context is None:
            raise ValueError(f"This flow was built with context_dim="
                             f"{self.context_dim}; pass the encoder context.")
        reverse = tfb.Permute(list(reversed(range(self.latent_dim))))
        layers = []
        for i in range(self.num_layers):
            if i:
                layers.append(reverse)
            layers.append(self._layer(i, context))
        return tfb.Chain(list(reversed(layers)), name=f"{self.key}_flow")

    def _gated(self, i, shift, log_scale):
        return self.gates[i][0] * shift, self.gates[i][1] * log_scale

    def config(self):
        return {"num_layers": self.num_layers,
                "hidden_units": list(self.hidden_units),
                "context_dim": self.context_dim, "activation": self.activation,
                "identity_init": self.identity_init}


class _MadeFlow(_Flow):
    """Shared MADE machinery for IAF and MAF."""

    def _make_network(self, i):
        kwargs = {}
        if self.context_dim:
            kwargs = dict(conditional=True,
                          conditional_event_shape=[self.context_dim])
        return tfb.AutoregressiveNetwork(
            params=2, event_shape=[self.latent_dim],
            hidden_units=list(self.hidden_units),
            activation=get_activation(self.activation), name=f"made_{i}",
            **kwargs)

    def _maf(self, i, context):
        made = self.networks[i]
        last = {}

        def shift_and_log_scale(y):
            # The bijector asks for the same input twice: once for the
            # transform and once for its log-determinant. Remember the last
            # call so that sampling with log q costs one network pass.
            if last.get("y") is y:
                return last["out"]
            if context is None:
                params = made(y)
            else:
                params = made(y, conditional_input=context)
            out = self._gated(i, params[..., 0], params[..., 1])
            last.update(y=y, out=out)
            return out

        return tfb.MaskedAutoregressiveFlow(
            shift_and_log_scale_fn=shift_and_log_scale, name=f"maf_{i}")


class IAF(_MadeFlow):
    """Inverse autoregressive flow: one parallel pass per layer to sample."""
    key = "iaf"

    def _layer(self, i, context):
        return tfb.Invert(self._maf(i, context), name=f"iaf_{i}")


class MAF(_MadeFlow):
    """Masked autoregressive flow: sequential sampling, parallel density."""
    key = "maf"

    def _layer(self, i, context):
        return self._maf(i, context)


class RealNVP(_Flow):
    """Affine coupling flow (half the coordinates transform the other half)."""
    key = "realnvp"

    def __init__(self, latent_dim: int, *args, **kwargs):
        if latent_dim < 2:
            raise ValueError("posterior_flow='realnvp' needs latent_dim >= 2; "
                             f"got {latent_dim}. Use 'iaf' for 1-D latents.")
        super().__init__(latent_dim, *args, **kwargs)

    @property
    def num_masked(self):
        return self.latent_dim // 2

    def _make_network(self, i):
        act = get_activation(self.activation)
        units = self.latent_dim - self.num_masked
        layers = [tf_keras.layers.Dense(u, activation=act)
                  for u in self.hidden_units]
        layers.append(tf_keras.layers.Dense(2 * units))
        return tf_keras.Sequential(layers, name=f"coupling_{i}")

    def _layer(self, i, context):
        net = self.networks[i]

        def shift_and_log_scale(x0, output_units):
            inputs = x0
            if context is not None:
                ctx = tf.broadcast_to(
                    context, tf.concat([tf.shape(x0)[:-1], [self.context_dim]], 0))
                inputs = tf.concat([x0, ctx], axis=-1)
            # Run the network on [M, features]: tf_keras would squeeze a
            # trailing axis of size 1 from a rank-3 input.
            flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
            params = tf.reshape(net(flat), tf.concat(
                [tf.shape(inputs)[:-1], [2 * output_units]], 0))
            return self._gated(i, params[..., :output_units],
                               params[..., output_units:])

        return tfb.RealNVP(num_masked=self.num_masked,
                           shift_and_log_scale_fn=shift_and_log_scale,
                           name=f"realnvp_{i}")


FLOWS = {cls.key: cls for cls in (IAF, MAF, RealNVP)}
