"""The variational autoencoder: encoder q(z|x), decoder p(x|z), prior p(z).

`VAE` composes the pieces of this package into a `LatentVariableModel`:

* `encode(x)` returns q(z|x) = N(mu(x), diag(sigma(x)^2)) as a
  `tfd.MultivariateNormalDiag` (batch [N], event [latent_dim]), or a
  `tfd.TransformedDistribution` of it through a posterior flow;
* `decode(z)` returns p(x|z) as `tfd.Independent(...)` with event shape
  `data_shape` (see `tfpvae.likelihoods`);
* `prior` is p(z) (see `tfpvae.priors`);
* the bounds are those of `LatentVariableModel` (`tfpvae.objectives`).

Its hyperparameters are the fields of `tfpvae.config.ModelConfig`, passed
as keyword arguments; each is documented there once (and in docs/api.md).
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

from typing import Callable, Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfpvae import networks
from tfpvae import priors as priors_lib
from tfpvae.models import parts
from tfpvae.models.base import LatentVariableModel

tfd = tfp.distributions
tfb = tfp.bijectors

DTYPE_POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")




class VAE(LatentVariableModel):
    """A variational autoencoder with pluggable networks, prior and flow.

    Args:
        latent_dim: Dimension of z (> 0); several sizes, nearest the data
            first, build a `tfpvae.models.HierarchicalVAE` instead (see the
            `hierarchy` setting).
        data_shape: Shape of one example, e.g. (28, 28, 1) or (18,).
        posterior_flow: None, a name of `tfpvae.flows.FLOWS`, a
            `tfb.Bijector`, or a callable `context -> tfb.Bijector`.
        gaussian_scale: Scale of the "gaussian" likelihood: a float (fixed;
            squared-error loss), "learned" or "decoder".
        num_classes: Classes of the labels the model is conditioned on
            (0: unconditional).
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
        **settings: The other fields of `tfpvae.config.ModelConfig`
            (likelihood, architecture, hidden_units, activation, prior,
            mixture_components, flow_layers, ...), each documented there.
    """

    family = "vae"

    def __new__(cls, latent_dim=None, *args, **kwargs):
        """With several latent sizes, `VAE(...)` builds the hierarchical
        model (`tfpvae.models.hierarchy.HierarchicalVAE`)."""
        if (cls is VAE and isinstance(latent_dim, (list, tuple))
                and len(latent_dim) > 1):
            from tfpvae.models.hierarchy import HierarchicalVAE  # pylint: disable=import-outside-toplevel
            return HierarchicalVAE(latent_dim, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, latent_dim: int | Sequence[int], data_shape: Sequence[int] = (28, 28, 1),
                 *, posterior_flow=None, gaussian_scale="learned",
                 num_classes: int = 0, encoder: Callable | None = None,
                 decoder: Callable | None = None,
                 dtype_policy: str | None = None, seed: int = 0,
                 name: str | None = None, **settings):
        if posterior_flow == "none":  # The command line's spelling of None.
            posterior_flow = None
        settings = parts.model_settings(latent_dim, posterior_flow,
                                        gaussian_scale, settings)
        super().__init__(data_shape, (settings.latent_dim,), num_classes,
                         name=name)
        if dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"Unknown dtype_policy {dtype_policy!r}; choose "
                             f"one of {[p for p in DTYPE_POLICIES if p]}.")
        if settings.prior == "vamp" and num_classes:
            raise ValueError("The VampPrior's pseudo-inputs carry no labels: "
                             "use --prior=normal or mixture with --conditional.")
        self.settings = settings
        self.epsilon_std = float(settings.epsilon_std)
        self.context_units = (int(settings.flow_context_units)
                              if posterior_flow else 0)
        self._extra_config = dict(
            dtype_policy=dtype_policy, seed=int(seed),
            custom_networks=encoder is not None or decoder is not None,
            custom_flow=posterior_flow is not None
            and not isinstance(posterior_flow, str))
        self.likelihood = parts.make_likelihood(settings, self.data_shape)
        self._build_networks(encoder, decoder, dtype_policy)
        self._prior = parts.make_prior(settings, self.latent_dim,
                                       self.data_shape,
                                       self._base_posterior_of, seed)
        self.flow = (parts.make_flow(settings, self.latent_dim,
                                     self.context_units)
                     if isinstance(posterior_flow, str) else posterior_flow)
        # Build every network now: all variables exist after construction.
        encoder_units = 2 * self.latent_dim + self.context_units
        labels = tf.zeros([1], tf.int32) if num_classes else None
        features = self._encoder_output(tf.zeros((1,) + self.data_shape), labels)
        if features.shape[-1] != encoder_units:
            raise ValueError(
                f"The encoder must output 2 * latent_dim + flow_context_units = "
                f"{encoder_units} units; it outputs {features.shape[-1]}.")
        self.decode(tf.zeros([1, self.latent_dim]), labels)

    def _build_networks(self, encoder, decoder, dtype_policy) -> None:
        s = self.settings
        self.encoder = encoder if encoder is not None else networks.make_encoder(
            s.architecture, self.data_shape,
            2 * self.latent_dim + self.context_units,
            hidden_units=s.hidden_units, activation=s.activation,
            conv_filters=s.conv_filters, resnet_blocks=s.resnet_blocks,
            dtype_policy=dtype_policy, label_units=self.num_classes)
        self.decoder = decoder if decoder is not None else networks.make_decoder(
            s.architecture, self.latent_dim + self.num_classes, self.data_shape,
            num_params=self.likelihood.num_params, hidden_units=s.hidden_units,
            activation=s.activation, conv_filters=s.conv_filters, resnet_blocks=s.resnet_blocks,
            dtype_policy=dtype_policy)

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
        self._prior.init_from_data(self.check_x(x))
        return True

    def initialize_from_data(self, x, rng, labels=None) -> bool:
        """Starts a VampPrior's pseudo-inputs at K training examples drawn
        without replacement by `rng` (in the order of `x`)."""
        del labels
        return parts.init_vamp_from_data(self._prior, self.check_x, x, rng)

    @property
    def has_analytic_kl(self) -> bool:
        """Whether KL(q(z|x) || p(z)) has a closed form for this model."""
        return self.flow is None and self._prior.has_analytic_kl

    def no_analytic_kl_reason(self) -> str:
        reasons = []
        if self.flow is not None:
            reasons.append("a flow posterior")
        if not self._prior.has_analytic_kl:
            reasons.append(f"the {self._prior.key!r} prior")
        return " and ".join(reasons)

    @property
    def output_size(self) -> int:
        return super().output_size * self.likelihood.num_params

    def _encoder_output(self, x, labels):
        if self.num_classes:
            return self.encoder((x, tf.one_hot(labels, self.num_classes)))
        return self.encoder(x)

    def _features(self, x, labels=None):
        h = tf.cast(self._encoder_output(x, labels), tf.float32)
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

    def encode(self, x, labels=None) -> tfd.Distribution:
        """Returns q(z|x): batch shape [N], event shape [latent_dim].

        Args:
            x: Data `[N, *data_shape]`.
            labels: The labels of x, for a conditional model.
        """
        labels = self.check_labels(labels)
        return self._posterior(*self._features(self.check_x(x), labels))

    def sampling_posterior(self, x, labels=None):
        loc, scale, context = self._features(self.check_x(x),
                                             self.check_labels(labels))
        posterior = self._posterior(loc, scale, context, self.epsilon_std)
        kl_posterior = (self._posterior(loc, scale, context)
                        if self.epsilon_std != 1.0 else None)
        return posterior, kl_posterior

    def posterior_mean(self, x, labels=None) -> tf.Tensor:
        """The encoder's mean mu(x), pushed through the flow if there is one.

        For a flow posterior this is the image of the base mean, a
        representative point rather than the exact mean of q(z|x).
        """
        loc, _, context = self._features(self.check_x(x),
                                         self.check_labels(labels))
        if self.flow is None:
            return loc
        return self._posterior(loc, tf.ones_like(loc), context).bijector.forward(loc)

    def decode(self, z, labels=None) -> tfd.Distribution:
        """Returns p(x|z) for z of shape [..., latent_dim].

        The result has batch shape z.shape[:-1] and event shape `data_shape`.
        A conditional model needs `labels` ([N] integers in [0,
        num_classes), checked as in `encode`).
        """
        z = tf.convert_to_tensor(z, tf.float32)
        labels = self.check_labels(labels)
        batch_shape = tf.shape(z)[:-1]
        if self.num_classes:
            z = parts.with_labels(z, labels, self.num_classes)
        params = self.decoder(tf.reshape(z, [-1, z.shape[-1]]))
        params = tf.cast(params, tf.float32)
        params = tf.reshape(params, tf.concat(
            [batch_shape, self.data_shape, [self.likelihood.num_params]], 0))
        return self.likelihood(params)

    # ------------------------------------------------------------------ #
    # Configuration.

    def get_config(self) -> dict:
        """The JSON-serialisable constructor arguments (see `from_config`)."""
        config = self.settings.to_dict()
        flow = config["posterior_flow"]
        scale = config["gaussian_scale"]
        config.update(
            family=self.family, data_shape=list(self.data_shape),
            num_classes=self.num_classes,
            posterior_flow=None if flow == "none" else flow,
            flow_context_units=self.context_units,
            gaussian_scale=scale if scale in ("learned", "decoder")
            else float(scale), **self._extra_config)
        if config.pop("custom_flow"):
            config["posterior_flow"] = "<custom>"
        return config

    @classmethod
    def config_defaults(cls) -> dict:
        return parts.config_defaults(super().config_defaults())

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        """Rebuilds a VAE (untrained) from `get_config()`."""
        config = dict(config)
        config.pop("family", None)
        if config.pop("custom_networks", False) or config.get(
                "posterior_flow") == "<custom>":
            raise ValueError(
                "This model was built with custom networks or a custom flow; "
                "rebuild it in Python with the same objects and restore the "
                "checkpoint with tf.train.Checkpoint(model=model).")
        return cls(**config)












parts.spell_out_settings(VAE)
