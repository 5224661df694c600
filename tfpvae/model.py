"""The variational autoencoder: encoder q(z|x), decoder p(x|z), prior p(z).

`VAE` is a `tf.Module` that composes the pieces of this package:

* `encode(x)` returns q(z|x) = N(mu(x), diag(sigma(x)^2)) as a
  `tfd.MultivariateNormalDiag` (batch [N], event [latent_dim]), or a
  `tfd.TransformedDistribution` of it through a posterior flow;
* `decode(z)` returns p(x|z) as `tfd.Independent(...)` with event shape
  `data_shape` (see `tfpvae.likelihoods`);
* `prior` is p(z) (see `tfpvae.priors`);
* `elbo`, `iwae` and `log_likelihood` are the bounds of `tfpvae.objectives`.

All layers are tf_keras layers, so `model.trainable_variables` holds every
variable of the encoder, decoder, prior, likelihood and flow.

The reparameterisation noise: z = mu + epsilon_std * sigma * eps, eps ~ N(0, I).
`epsilon_std=1` (the default) gives the true ELBO. Other values reproduce the
classic Keras tutorial, which draws eps ~ N(0, epsilon_std^2): the
reconstruction term then uses a posterior whose spread is scaled by
`epsilon_std` while the analytic KL term still measures the unscaled
posterior, so the training objective is no longer a lower bound on log p(x)
(a small `epsilon_std` makes it optimistic and the model more like a plain
autoencoder). With kl="mc" the rate is measured for the scaled posterior, and
the objective is a proper ELBO of that posterior. `log_likelihood` and `iwae`
always use epsilon_std = 1.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfpvae import flows as flows_lib
from tfpvae import likelihoods as likelihoods_lib
from tfpvae import networks
from tfpvae import objectives
from tfpvae import priors as priors_lib

tfd = tfp.distributions
tfb = tfp.bijectors

PRIOR_CHOICES = tuple(priors_lib.PRIORS)
FLOW_CHOICES = tuple(flows_lib.FLOWS)
LIKELIHOOD_CHOICES = tuple(likelihoods_lib.LIKELIHOODS)
ARCHITECTURE_CHOICES = networks.ARCHITECTURES
DTYPE_POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")

# Elements of the largest decoder output per chunk of `log_likelihood`: 4 MB
# of float32 keeps a chunk in cache; on CPU 2**20 ran ~1.5x faster than
# 2**24 (docs/performance.md).
_LOG_LIKELIHOOD_BUDGET = 2 ** 20


def _choice_error(what, value, choices):
    return ValueError(f"Unknown {what} {value!r}; choose one of "
                      f"{sorted(c for c in choices if c is not None)}.")


class VAE(tf.Module):
    """A variational autoencoder with pluggable networks, prior and flow.

    Args:
        latent_dim: Dimension of z (> 0).
        data_shape: Shape of one example, e.g. (28, 28, 1) or (18,).
        likelihood: "bernoulli", "gaussian" or "continuous_bernoulli".
        architecture: "mlp" or "conv" (ignored for a network passed in).
        hidden_units: Dense hidden layer widths (encoder order; the decoder
            mirrors them).
        activation: Hidden activation ("relu", "leaky_relu", "elu", "tanh",
            "sigmoid", ...).
        prior: "normal", "mixture" (learned mixture of Gaussians) or "vamp".
        posterior_flow: None, "iaf", "maf", "realnvp", a `tfb.Bijector`, or a
            callable `context -> tfb.Bijector`.
        mixture_components: Components of the mixture prior / pseudo-inputs of
            the VampPrior.
        flow_layers: Number of flow layers.
        flow_hidden_units: Hidden widths of each flow layer's network.
        flow_context_units: Size of the context vector the encoder passes to
            the flow (0: unconditional flow).
        conv_filters: Filters of the strided convolutions ("conv").
        gaussian_scale: Scale of the "gaussian" likelihood: a float (fixed;
            squared-error loss), "learned" or "decoder".
        epsilon_std: Std of the reparameterisation noise during training
            (see the module docstring; 1.0 is the true ELBO).
        encoder: Optional network `x [N, *data_shape] -> [N, 2 * latent_dim +
            flow_context_units]` (loc, then pre-softplus scale, then context).
        decoder: Optional network `z [N, latent_dim] -> [N, *data_shape, P]`
            (or anything reshapeable to it), P = parameters per dimension.
        dtype_policy: None/"float32", "mixed_bfloat16" or "mixed_float16":
            networks compute in that precision; distributions stay float32.
        seed: Seed of the initial mixture-prior means and VampPrior
            pseudo-inputs. Network and flow weights are drawn by tf_keras
            initialisers from TensorFlow's global seed: call
            `tf_keras.utils.set_random_seed(s)` first for reproducible
            weights (the trainer does, with --seed).
        name: Module name.
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: Sequence[int] = (28, 28, 1),
        likelihood: str = "bernoulli",
        architecture: str = "mlp",
        hidden_units: Sequence[int] = (500, 500),
        activation: str = "relu",
        prior: str = "normal",
        posterior_flow=None,
        mixture_components: int = 10,
        flow_layers: int = 4,
        flow_hidden_units: Sequence[int] = (256, 256),
        flow_context_units: int = 0,
        conv_filters: Sequence[int] = (32, 64),
        gaussian_scale="learned",
        epsilon_std: float = 1.0,
        encoder: Callable | None = None,
        decoder: Callable | None = None,
        dtype_policy: str | None = None,
        seed: int = 0,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if not isinstance(latent_dim, (int, np.integer)) or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer; got "
                             f"{latent_dim!r}.")
        data_shape = tuple(int(d) for d in data_shape)
        if not data_shape or any(d <= 0 for d in data_shape):
            raise ValueError(f"data_shape must be a tuple of positive sizes; got "
                             f"{data_shape!r}.")
        if likelihood not in likelihoods_lib.LIKELIHOODS:
            raise _choice_error("likelihood", likelihood, LIKELIHOOD_CHOICES)
        if architecture not in ARCHITECTURE_CHOICES:
            raise _choice_error("architecture", architecture,
                                ARCHITECTURE_CHOICES)
        if prior not in priors_lib.PRIORS:
            raise _choice_error("prior", prior, PRIOR_CHOICES)
        if isinstance(posterior_flow, str) and posterior_flow not in flows_lib.FLOWS:
            raise _choice_error("posterior_flow", posterior_flow,
                                FLOW_CHOICES + ("a tfb.Bijector or callable",))
        if posterior_flow is not None and not (
                isinstance(posterior_flow, str) or callable(posterior_flow)):
            raise ValueError(
                f"posterior_flow must be None, one of {list(FLOW_CHOICES)}, a "
                f"tfb.Bijector or a callable returning one; got {posterior_flow!r}.")
        if dtype_policy not in DTYPE_POLICIES:
            raise _choice_error("dtype_policy", dtype_policy, DTYPE_POLICIES)
        networks.get_activation(activation)  # Validates the name.
        if not epsilon_std > 0:
            raise ValueError(f"epsilon_std must be > 0; got {epsilon_std}.")
        if flow_context_units < 0:
            raise ValueError(f"flow_context_units must be >= 0; got "
                             f"{flow_context_units}.")

        self.latent_dim = int(latent_dim)
        self.data_shape = data_shape
        self.epsilon_std = float(epsilon_std)
        self.context_units = int(flow_context_units) if posterior_flow else 0
        self._config = dict(
            latent_dim=self.latent_dim, data_shape=list(data_shape),
            likelihood=likelihood, architecture=architecture,
            hidden_units=[int(u) for u in hidden_units], activation=activation,
            prior=prior,
            posterior_flow=posterior_flow if isinstance(posterior_flow, str)
            or posterior_flow is None else "<custom>",
            mixture_components=int(mixture_components),
            flow_layers=int(flow_layers),
            flow_hidden_units=[int(u) for u in flow_hidden_units],
            flow_context_units=self.context_units,
            conv_filters=[int(f) for f in conv_filters],
            gaussian_scale=gaussian_scale, epsilon_std=self.epsilon_std,
            dtype_policy=dtype_policy, seed=int(seed),
            custom_networks=encoder is not None or decoder is not None)

        kwargs = {"scale": gaussian_scale} if likelihood == "gaussian" else {}
        self.likelihood = likelihoods_lib.make_likelihood(
            likelihood, data_shape, **kwargs)
        encoder_units = 2 * self.latent_dim + self.context_units
        net_kwargs = dict(hidden_units=hidden_units, activation=activation,
                          conv_filters=conv_filters, dtype_policy=dtype_policy)
        self.encoder = encoder if encoder is not None else networks.make_encoder(
            architecture, data_shape, encoder_units, **net_kwargs)
        self.decoder = decoder if decoder is not None else networks.make_decoder(
            architecture, self.latent_dim, data_shape,
            num_params=self.likelihood.num_params, **net_kwargs)

        if prior == "normal":
            self._prior = priors_lib.NormalPrior(self.latent_dim)
        elif prior == "mixture":
            self._prior = priors_lib.MixturePrior(
                self.latent_dim, mixture_components, seed=seed)
        else:
            self._prior = priors_lib.VampPrior(
                self.latent_dim, data_shape, self._base_posterior_of,
                components=mixture_components, seed=seed)

        if isinstance(posterior_flow, str):
            self.flow = flows_lib.FLOWS[posterior_flow](
                self.latent_dim, num_layers=flow_layers,
                hidden_units=flow_hidden_units, context_dim=self.context_units,
                activation=activation)
        else:
            self.flow = posterior_flow

        # Build every network now: all variables exist after construction.
        features = self.encoder(tf.zeros((1,) + data_shape))
        if features.shape[-1] != encoder_units:
            raise ValueError(
                f"The encoder must output 2 * latent_dim + flow_context_units = "
                f"{encoder_units} units; it outputs {features.shape[-1]}.")
        self.decode(tf.zeros([1, self.latent_dim]))
        self._log_likelihood_fn = tf.function(self._log_likelihood_chunks)

    # ------------------------------------------------------------------ #
    # Distributions.

    @property
    def prior(self) -> tfd.Distribution:
        """p(z), a `tfd.Distribution` with event shape [latent_dim]."""
        return self._prior()

    def init_prior_from_data(self, x) -> bool:
        """Starts a VampPrior's pseudo-inputs at the examples `x[:K]`.

        Returns:
            True if the prior has pseudo-inputs (and they were set), else False.
        """
        if not isinstance(self._prior, priors_lib.VampPrior):
            return False
        self._prior.init_from_data(self._check_x(x))
        return True

    @property
    def has_analytic_kl(self) -> bool:
        """Whether KL(q(z|x) || p(z)) has a closed form for this model."""
        return self.flow is None and self._prior.has_analytic_kl

    def _check_x(self, x) -> tf.Tensor:
        x = tf.convert_to_tensor(x, tf.float32)
        if tuple(x.shape[1:]) != self.data_shape and x.shape.rank is not None:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this model expects "
                f"[N, {', '.join(map(str, self.data_shape))}] (data_shape="
                f"{self.data_shape}).")
        return x

    def _features(self, x):
        h = tf.cast(self.encoder(x), tf.float32)
        d = self.latent_dim
        loc, scale = h[..., :d], tf.nn.softplus(h[..., d:2 * d]) + 1e-5
        context = h[..., 2 * d:] if self.context_units else None
        return loc, scale, context

    def _base_posterior_of(self, x) -> tfd.MultivariateNormalDiag:
        loc, scale, _ = self._features(x)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def _posterior(self, loc, scale, context, noise_scale=1.0):
        base = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale * noise_scale)
        if self.flow is None:
            return base
        bijector = (self.flow if isinstance(self.flow, tfb.Bijector)
                    else self.flow(context))
        return tfd.TransformedDistribution(base, bijector)

    def encode(self, x) -> tfd.Distribution:
        """Returns q(z|x): batch shape [N], event shape [latent_dim].

        Args:
            x: Data `[N, *data_shape]`.
        """
        return self._posterior(*self._features(self._check_x(x)))

    def posterior_mean(self, x) -> tf.Tensor:
        """The encoder's mean mu(x), pushed through the flow if there is one.

        For a flow posterior this is the image of the base mean, a
        representative point rather than the exact mean of q(z|x).
        """
        loc, _, context = self._features(self._check_x(x))
        if self.flow is None:
            return loc
        return self._posterior(loc, tf.ones_like(loc), context).bijector.forward(loc)

    def decode(self, z) -> tfd.Distribution:
        """Returns p(x|z) for z of shape [..., latent_dim].

        The result has batch shape z.shape[:-1] and event shape `data_shape`.
        """
        z = tf.convert_to_tensor(z, tf.float32)
        batch_shape = tf.shape(z)[:-1]
        params = self.decoder(tf.reshape(z, [-1, self.latent_dim]))
        params = tf.cast(params, tf.float32)
        params = tf.reshape(params, tf.concat(
            [batch_shape, self.data_shape, [self.likelihood.num_params]], 0))
        return self.likelihood(params)

    def sample(self, n: int, seed=None, mean: bool = False) -> tf.Tensor:
        """Draws n examples from the model: z ~ p(z), then x ~ p(x|z).

        Args:
            n: Number of examples.
            seed: An int or stateless seed (shape [2]) for reproducible draws.
            mean: Return the decoder mean E[x|z] instead of a draw.

        Returns:
            A float32 tensor `[n, *data_shape]`.
        """
        z_seed, x_seed = tfp.random.split_seed(_as_seed(seed), n=2)
        z = self.prior.sample(n, seed=z_seed)
        p = self.decode(z)
        return p.mean() if mean else tf.cast(p.sample(seed=x_seed), tf.float32)

    def reconstruct(self, x, seed=None, mean: bool = True) -> tf.Tensor:
        """Encodes x, draws z ~ q(z|x) and returns the decoder mean or a draw."""
        z_seed, x_seed = tfp.random.split_seed(_as_seed(seed), n=2)
        z = self.encode(x).sample(seed=z_seed)
        p = self.decode(z)
        return p.mean() if mean else tf.cast(p.sample(seed=x_seed), tf.float32)

    # ------------------------------------------------------------------ #
    # Bounds.

    def elbo(self, x, kl: str = "analytic", n_samples: int = 1, beta=1.0,
             seed=None) -> objectives.ELBOResult:
        """The ELBO, per example, averaged over `n_samples` posterior draws.

        Args:
            x: Data `[N, *data_shape]`.
            kl: "analytic" (closed form; only for a diagonal Gaussian posterior
                with the normal prior) or "mc" (Monte Carlo).
            n_samples: Posterior draws per example.
            beta: Weight of the KL term in `objective` (beta-VAE).
            seed: An int or stateless seed, or None.

        Returns:
            `ELBOResult(elbo, rate, distortion, objective)`, each [N].
        """
        if kl == "analytic" and not self.has_analytic_kl:
            raise ValueError(self._no_analytic_kl_message())
        loc, scale, context = self._features(self._check_x(x))
        posterior = self._posterior(loc, scale, context, self.epsilon_std)
        kl_posterior = (self._posterior(loc, scale, context)
                        if self.epsilon_std != 1.0 else None)
        return objectives.evidence_lower_bound(
            x, posterior, self.prior, self.decode, kl=kl, n_samples=n_samples,
            beta=beta, seed=_as_seed(seed, allow_none=True),
            kl_posterior=kl_posterior)

    def iwae(self, x, k: int, beta=1.0, seed=None) -> objectives.ELBOResult:
        """The importance-weighted bound IWAE_k per example (see objectives)."""
        return objectives.importance_weighted_bound(
            x, self.encode(x), self.prior, self.decode, k=k, beta=beta,
            seed=_as_seed(seed, allow_none=True))

    def loss(self, x, kl: str = "analytic", k: int = 1, beta=1.0, seed=None):
        """The training loss and its terms.

        With k == 1 the loss is the negative beta-ELBO (`elbo`, with `kl`);
        with k > 1 it is the negative importance-weighted bound IWAE_k
        (`iwae`; its rate is always the Monte Carlo estimate).

        Returns:
            (scalar loss averaged over the batch, `ELBOResult` of [N] terms).
        """
        if k > 1:
            result = self.iwae(x, k=k, beta=beta, seed=seed)
        else:
            result = self.elbo(x, kl=kl, beta=beta, seed=seed)
        return -tf.reduce_mean(result.objective), result

    def _no_analytic_kl_message(self):
        reasons = []
        if self.flow is not None:
            reasons.append("a flow posterior")
        if not self._prior.has_analytic_kl:
            reasons.append(f"the {self._prior.key!r} prior")
        return (f"kl='analytic' has no closed form for {' and '.join(reasons)}; "
                f"use kl='mc'.")

    def log_likelihood(self, x, k: int = 5000, seed=None,
                       chunk_size: int | None = None) -> tf.Tensor:
        """Importance-sampled estimate of log p(x) per example (IWAE_k).

        The k samples are drawn in chunks inside one compiled `tf.while_loop`
        (no Python loop over samples), with a running log-sum-exp, so memory
        stays bounded: a chunk's decoder output holds at most ~2**20 numbers.

        Args:
            x: Data `[N, *data_shape]`.
            k: Number of importance samples.
            seed: An int or stateless seed, or None.
            chunk_size: Samples per chunk (default: from the memory budget).

        Returns:
            A float32 tensor [N]: log (1/k) sum_i p(x, z_i) / q(z_i|x).
        """
        x = self._check_x(x)
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}.")
        n = int(x.shape[0])
        if chunk_size is None:
            per_sample = n * max(math.prod(self.data_shape)
                                 * self.likelihood.num_params, 1)
            chunk_size = max(1, min(k, _LOG_LIKELIHOOD_BUDGET // per_sample))
        chunk_size = min(int(chunk_size), k)
        return self._log_likelihood_fn(
            x, k=k, chunk_size=chunk_size, seed=_as_seed(seed))

    def _log_likelihood_chunks(self, x, k, chunk_size, seed):
        posterior = self.encode(x)
        prior = self.prior
        n_full, rest = divmod(k, chunk_size)

        def chunk_lse(size, chunk_seed):
            log_px_z, log_pz, log_q = objectives.log_importance_weights(
                x, posterior, prior, self.decode, size, seed=chunk_seed)
            return tf.reduce_logsumexp(log_px_z + log_pz - log_q, axis=0)

        def body(i, acc):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i)
            lse = chunk_lse(chunk_size, chunk_seed)
            return i + 1, tf.reduce_logsumexp(tf.stack([acc, lse]), axis=0)

        acc = tf.fill(tf.shape(x)[:1], tf.constant(-np.inf, tf.float32))
        _, acc = tf.while_loop(lambda i, _: i < n_full, body,
                               (tf.constant(0), acc))
        if rest:
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, n_full)
            acc = tf.reduce_logsumexp(
                tf.stack([acc, chunk_lse(rest, chunk_seed)]), axis=0)
        return acc - math.log(k)

    # ------------------------------------------------------------------ #
    # Configuration.

    def get_config(self) -> dict:
        """The JSON-serialisable constructor arguments (see `from_config`)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        """Rebuilds a VAE (untrained) from `get_config()`."""
        config = dict(config)
        if config.pop("custom_networks", False) or config.get(
                "posterior_flow") == "<custom>":
            raise ValueError(
                "This model was built with custom networks or a custom flow; "
                "rebuild it in Python with the same objects and restore the "
                "checkpoint with tf.train.Checkpoint(model=model).")
        return cls(**config)


def _as_seed(seed, allow_none=False):
    """Turns an int / [2] seed into a stateless seed tensor; None draws one."""
    if seed is None:
        if allow_none:
            return None
        return tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)
