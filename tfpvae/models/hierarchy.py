"""Hierarchical VAEs: several layers of latent variables z_1, ..., z_L.

z_1 is the layer nearest the data, z_L the top. The posterior q(z|x) and the
prior p(z) are `tfd.JointDistributionNamed`s over the layers "z1", ...,
"zL", so the objectives of `tfpvae.objectives` read them layer by layer
with no code of their own. Every conditional is a diagonal Gaussian whose
mean and scale come from a small network; the top layer's prior is one of
`tfpvae.priors` (normal, mixture, VampPrior) and its posterior can pass
through one of `tfpvae.flows`. Three ways to connect the layers
(`hierarchy`):

* ``bottom_up``, the stacked model of Burda et al. [1]:
  q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}),  p(z_L) p(z_{L-1}|z_L) ... p(x|z_1).
* ``tomczak``, the HVAE of Tomczak & Welling [2] (their L = 2, generalised):
  q(z_L|x) q(z_{L-1}|x, z_L) ... q(z_1|x, z_2),  p(z_L) ... p(z_1|z_2)
  p(x|z_1, ..., z_L): the decoder sees every layer.
* ``ladder``, the ladder VAE of Sonderby et al. [3]: a deterministic
  bottom-up pass d_1 = f_1(x), d_l = f_l(d_{l-1}) gives each layer a Gaussian
  N(mu_l, sigma_l) of what the data says; inference then runs top-down along
  the generative path: q(z_L|x) = N(mu_L, sigma_L), and for l < L

      q(z_l|z_{l+1}, x) ∝ N(z_l; mu_l, sigma_l) p(z_l|z_{l+1}),

  the precision-weighted combination of the two Gaussians
  (`precision_weighted`): precision = 1/sigma^2 + 1/s_p^2 and
  mean = (mu/sigma^2 + m_p/s_p^2) / precision. The decoder is p(x|z_1).
  We kept the paper's precision weighting rather than the residual
  parameterisation of NVAE [4] (q = N(m_p + dm, s_p * ds)): it needs no
  further network, is exact Gaussian algebra that a test can check, and
  with the top-down path shared it is what made the ladder VAE train its
  upper layers.

The networks that read x and write x are those of `tfpvae.networks` (MLP,
conv or ResNet, `architecture`): the encoder's last hidden layer is the
features h(x) of the posteriors; the networks between latent layers are
MLPs of width `latent_hidden_units`.

`decode_top(z_top)` draws what the top layer controls: the lower layers at
the means of their prior conditionals (or drawn from them), then x.
`posterior_mean(x)` is the top layer's posterior mean; for ``bottom_up``,
whose top posterior depends on the lower layers, it is taken at their
posterior means, and so are a VampPrior's components (any fixed function of
the pseudo-inputs gives a normalised mixture, so the bound stays a bound).

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
[2] Tomczak, J. M. and Welling, M. VAE with a VampPrior. AISTATS 2018.
[3] Sonderby, C. K. et al. Ladder variational autoencoders. NeurIPS 2016.
[4] Vahdat, A. and Kautz, J. NVAE: a deep hierarchical variational
    autoencoder. NeurIPS 2020.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfpvae import flows as flows_lib
from tfpvae import networks
from tfpvae.config import ModelConfig
from tfpvae.models import parts
from tfpvae.models.base import LatentVariableModel
from tfpvae.models.base import as_seed

tfd = tfp.distributions

#: Floor of every conditional's scale.
MIN_SCALE = 1e-5


def layer_name(layer: int) -> str:
    """The key of latent layer `layer` (1 = nearest the data)."""
    return f"z{layer}"


def precision_weighted(loc_a, scale_a, loc_b, scale_b):
    """(loc, scale) of the normalised product of N(loc_a, scale_a^2) and
    N(loc_b, scale_b^2), per dimension."""
    precision_a, precision_b = tf.math.reciprocal(tf.square(scale_a)), \
        tf.math.reciprocal(tf.square(scale_b))
    precision = precision_a + precision_b
    loc = (loc_a * precision_a + loc_b * precision_b) / precision
    return loc, tf.math.rsqrt(precision)


def gaussian(loc, scale) -> tfd.MultivariateNormalDiag:
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)


def _node(parent: str, make: Callable) -> Callable:
    """A JointDistributionNamed node: a function of the layer `parent`
    (the joint reads the dependency from the parameter's name)."""
    def node(**values):
        return make(values[parent])
    node.__signature__ = inspect.Signature([inspect.Parameter(
        parent, inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    return node


class GaussianNet(tf.Module):
    """An MLP from `in_units` features to the mean and scale of a diagonal
    Gaussian over `size` units (plus `extra_units` more outputs, e.g. a
    flow's context). Inputs may have leading sample dimensions.

    Args:
        in_units: Input width.
        size: Dimension of the Gaussian.
        widths: Hidden widths (none: a linear map).
        act_name: Hidden activation.
        extra_units: Further linear outputs.
        dtype_policy: tf_keras mixed-precision policy name or None.
    """

    def __init__(self, in_units: int, size: int, widths: Sequence[int],
                 act_name: str, extra_units: int = 0,
                 dtype_policy: str | None = None, name=None):
        super().__init__(name=name)
        act = networks.get_activation(act_name)
        policy = tf_keras.mixed_precision.Policy(dtype_policy or "float32")
        self.size, self.extra_units = size, extra_units
        layers = [tf_keras.layers.InputLayer(input_shape=(in_units,))]
        layers += [tf_keras.layers.Dense(u, activation=act, dtype=policy)
                   for u in widths]
        layers.append(tf_keras.layers.Dense(2 * size + extra_units,
                                            dtype=policy))
        self.net = tf_keras.Sequential(layers)

    def __call__(self, h):
        """(loc, scale, extra) for inputs [..., in_units]."""
        flat = tf.reshape(h, [-1, h.shape[-1]])
        out = tf.cast(self.net(flat), tf.float32)
        out = tf.reshape(out, tf.concat([tf.shape(h)[:-1], [out.shape[-1]]], 0))
        d = self.size
        return (out[..., :d], tf.nn.softplus(out[..., d:2 * d]) + MIN_SCALE,
                out[..., 2 * d:] if self.extra_units else None)

    def distribution(self, h) -> tfd.MultivariateNormalDiag:
        loc, scale, _ = self(h)
        return gaussian(loc, scale)


class _Paths(tf.Module):
    """How the layers connect: the networks between them, and the posterior
    and prior they make.

    Args:
        sizes: Latent sizes, nearest the data first.
        features: Width of the encoder's features h(x).
        settings: The model's `ModelConfig`.
        context_units: Width of the top layer's flow context (0: none).
        dtype_policy: Mixed-precision policy name or None.
    """

    def __init__(self, sizes, features: int, settings: ModelConfig,
                 context_units: int, dtype_policy):
        super().__init__()
        self.sizes, self.features = tuple(sizes), features
        self.context_units = context_units
        self._net = lambda in_units, size, extra=0: GaussianNet(
            in_units, size, settings.latent_hidden_units, settings.activation,
            extra, dtype_policy)
        # p(z_l | z_{l+1}) for l = 1..L-1 (index l-1).
        self.prior_nets = [self._net(sizes[l], sizes[l - 1])
                           for l in range(1, len(sizes))]

    @property
    def top(self) -> str:
        return layer_name(len(self.sizes))

    def prior(self, top_prior: tfd.Distribution) -> tfd.JointDistributionNamed:
        """p(z) = p(z_L) prod_l p(z_l | z_{l+1})."""
        nodes = {self.top: top_prior}
        for l in range(1, len(self.sizes)):
            nodes[layer_name(l)] = _node(layer_name(l + 1),
                                         self.prior_nets[l - 1].distribution)
        return tfd.JointDistributionNamed(nodes)

    def lower_layers(self, z_top, lower: str, seed) -> dict:
        """Every layer below the top, from the prior's conditionals: their
        means (`lower="mean"`) or draws (`"sample"`)."""
        z = {self.top: z_top}
        seeds = tfp.random.split_seed(seed, n=len(self.sizes))
        for l in range(len(self.sizes) - 1, 0, -1):
            p = self.prior_nets[l - 1].distribution(z[layer_name(l + 1)])
            z[layer_name(l)] = (p.mean() if lower == "mean"
                                else p.sample(seed=seeds[l]))
        return z

    def decoder_input(self, z: dict) -> tf.Tensor:
        """What the decoder reads: z_1 (ladder, bottom_up)."""
        return z[layer_name(1)]

    @property
    def decoder_input_size(self) -> int:
        return self.sizes[0]


class BottomUp(_Paths):
    """q(z_1|x) q(z_l|z_{l-1}), p(z_L) p(z_l|z_{l+1}) p(x|z_1) (Burda et al.)."""

    key = "bottom_up"

    def __init__(self, sizes, features, settings, context_units, dtype_policy):
        super().__init__(sizes, features, settings, context_units,
                         dtype_policy)
        top = len(sizes) - 1
        # q(z_1|x) from the features, q(z_l|z_{l-1}) from the layer below.
        self.posterior_nets = [
            self._net(features if l == 0 else sizes[l - 1], sizes[l],
                      context_units if l == top else 0)
            for l in range(len(sizes))]

    def posterior(self, h, top_node) -> tfd.JointDistributionNamed:
        """`top_node(loc, scale, context)` makes the top layer's
        distribution (the model's flow, if any)."""
        nodes = {}
        for l, net in enumerate(self.posterior_nets, start=1):
            def make(v, net=net, top=l == len(self.sizes)):
                return top_node(*net(v)) if top else net.distribution(v)
            nodes[layer_name(l)] = (make(h) if l == 1 else
                                    _node(layer_name(l - 1), make))
        return tfd.JointDistributionNamed(nodes)

    def posterior_means(self, h) -> list[tf.Tensor]:
        """Each layer's posterior mean at the means of the layers below."""
        means, v = [], h
        for net in self.posterior_nets:
            v = net(v)[0]
            means.append(v)
        return means

    def top_params(self, h):
        """(loc, scale, context) of the top posterior at the lower means."""
        v = h
        for net in self.posterior_nets[:-1]:
            v = net(v)[0]
        return self.posterior_nets[-1](v)


class Tomczak(_Paths):
    """q(z_L|x) q(z_l|x, z_{l+1}), p(z_L) p(z_l|z_{l+1}) p(x|z_1..z_L)
    (Tomczak & Welling)."""

    key = "tomczak"

    def __init__(self, sizes, features, settings, context_units, dtype_policy):
        super().__init__(sizes, features, settings, context_units,
                         dtype_policy)
        self.top_net = self._net(features, sizes[-1], context_units)
        # q(z_l|x, z_{l+1}) for l = 1..L-1 (index l-1).
        self.posterior_nets = [self._net(features + sizes[l], sizes[l - 1])
                               for l in range(1, len(sizes))]

    def posterior(self, h, top_node) -> tfd.JointDistributionNamed:
        nodes = {self.top: top_node(*self.top_net(h))}
        for l in range(1, len(self.sizes)):
            net = self.posterior_nets[l - 1]
            nodes[layer_name(l)] = _node(
                layer_name(l + 1),
                lambda v, net=net: net.distribution(_with_features(h, v)))
        return tfd.JointDistributionNamed(nodes)

    def posterior_means(self, h) -> list[tf.Tensor]:
        means = [self.top_net(h)[0]]
        for net in reversed(self.posterior_nets):
            means.insert(0, net(_with_features(h, means[0]))[0])
        return means

    def top_params(self, h):
        return self.top_net(h)

    def decoder_input(self, z: dict) -> tf.Tensor:
        return tf.concat([z[layer_name(l)] for l in range(1, len(self.sizes) + 1)],
                         axis=-1)

    @property
    def decoder_input_size(self) -> int:
        return sum(self.sizes)


class Ladder(_Paths):
    """A bottom-up pass, then top-down inference: q(z_l|z_{l+1}, x) is the
    precision-weighted product of the bottom-up Gaussian and
    p(z_l|z_{l+1}) (Sonderby et al.)."""

    key = "ladder"

    def __init__(self, sizes, features, settings, context_units, dtype_policy):
        super().__init__(sizes, features, settings, context_units,
                         dtype_policy)
        act = settings.activation
        width = settings.latent_hidden_units[-1]
        # d_l = f_l(d_{l-1}) for l = 2..L; d_1 = h(x).
        self.up_nets = [_mlp(features if l == 1 else width,
                             settings.latent_hidden_units, act, dtype_policy)
                        for l in range(1, len(sizes))]
        top = len(sizes) - 1
        # The bottom-up Gaussian N(mu_l, sigma_l) of each layer, from d_l.
        self.bottom_up_heads = [
            GaussianNet(features if l == 0 else width, sizes[l], (), act,
                        context_units if l == top else 0, dtype_policy)
            for l in range(len(sizes))]

    def bottom_up(self, h) -> list[tuple]:
        """(loc, scale, context) of each layer's bottom-up Gaussian."""
        d, out = h, []
        for l, head in enumerate(self.bottom_up_heads):
            if l:
                d = tf.cast(self.up_nets[l - 1](d), tf.float32)
            out.append(head(d))
        return out

    def posterior(self, h, top_node) -> tfd.JointDistributionNamed:
        up = self.bottom_up(h)
        nodes = {self.top: top_node(*up[-1])}
        for l in range(1, len(self.sizes)):
            loc, scale, _ = up[l - 1]

            def merged(v, l=l, loc=loc, scale=scale):
                prior_loc, prior_scale, _ = self.prior_nets[l - 1](v)
                return gaussian(*precision_weighted(loc, scale, prior_loc,
                                                   prior_scale))
            nodes[layer_name(l)] = _node(layer_name(l + 1), merged)
        return tfd.JointDistributionNamed(nodes)

    def posterior_means(self, h) -> list[tf.Tensor]:
        up = self.bottom_up(h)
        means = [up[-1][0]]
        for l in range(len(self.sizes) - 1, 0, -1):
            prior_loc, prior_scale, _ = self.prior_nets[l - 1](means[0])
            means.insert(0, precision_weighted(up[l - 1][0], up[l - 1][1],
                                               prior_loc, prior_scale)[0])
        return means

    def top_params(self, h):
        return self.bottom_up(h)[-1]


def _mlp(in_units: int, widths, act_name: str, dtype_policy):
    """Dense layers `in_units -> widths`, the activation after each."""
    act = networks.get_activation(act_name)
    policy = tf_keras.mixed_precision.Policy(dtype_policy or "float32")
    return tf_keras.Sequential(
        [tf_keras.layers.InputLayer(input_shape=(in_units,))]
        + [tf_keras.layers.Dense(u, activation=act, dtype=policy)
           for u in widths])


def _with_features(h, v):
    """[h(x), v] with h broadcast over v's leading sample dimensions."""
    h = tf.broadcast_to(h, tf.concat([tf.shape(v)[:-1], tf.shape(h)[-1:]], 0))
    return tf.concat([h, v], axis=-1)


HIERARCHIES: dict[str, type[_Paths]] = {
    cls.key: cls for cls in (Ladder, BottomUp, Tomczak)}


class HierarchicalVAE(LatentVariableModel):
    """A VAE with several layers of latent variables (see the module).

    `tfpvae.VAE(latent_dim=(64, 32), ...)` builds one: the arguments are
    those of `tfpvae.VAE` (the fields of `tfpvae.config.ModelConfig`), with
    `latent_dim` a sequence of sizes, the layer nearest the data first, and
    `hierarchy` choosing how the layers connect. The prior setting applies
    to the top layer, and so does a posterior flow (by name). Custom
    networks and `epsilon_std` are for one layer only.

    Args:
        latent_dim: The size of each latent layer, nearest the data first.
        data_shape: Shape of one example.
        posterior_flow: None or a name of `tfpvae.flows.FLOWS` (top layer).
        gaussian_scale: As for `tfpvae.VAE`.
        num_classes: Classes of the labels the model is conditioned on.
        dtype_policy: As for `tfpvae.VAE`.
        seed: Seed of the initial mixture-prior means / pseudo-inputs.
        name: Module name.
        **settings: The other fields of `tfpvae.config.ModelConfig`.
    """

    family = "hierarchical_vae"

    def __init__(self, latent_dim: Sequence[int],
                 data_shape: Sequence[int] = (28, 28, 1), *,
                 posterior_flow=None, gaussian_scale="learned",
                 num_classes: int = 0, dtype_policy: str | None = None,
                 seed: int = 0, name: str | None = None, **settings):
        if posterior_flow is not None and not isinstance(posterior_flow, str):
            raise ValueError("A hierarchical VAE takes its top layer's flow by "
                             f"name, one of {list(flows_lib.FLOWS)}.")
        posterior_flow = None if posterior_flow == "none" else posterior_flow
        settings = parts.model_settings(latent_dim, posterior_flow,
                                        gaussian_scale, settings)
        if not isinstance(settings.latent_dim, tuple):
            raise ValueError("HierarchicalVAE needs several latent sizes; use "
                             "tfpvae.VAE for one layer.")
        super().__init__(data_shape, settings.latent_dim, num_classes, name=name)
        if not settings.hidden_units:
            raise ValueError("A hierarchical VAE reads the encoder's last "
                             "hidden layer: give at least one --hidden_units "
                             "entry.")
        if settings.prior == "vamp" and num_classes:
            raise ValueError("The VampPrior's pseudo-inputs carry no labels: "
                             "use --prior=normal or mixture with --conditional.")
        self.settings = settings
        self._extra_config = dict(dtype_policy=dtype_policy, seed=int(seed))
        self.context_units = (settings.flow_context_units if posterior_flow
                              else 0)
        self._build(dtype_policy, seed)

    def _build(self, dtype_policy, seed) -> None:
        s = self.settings
        self.likelihood = parts.make_likelihood(s, self.data_shape)
        features = s.hidden_units[-1]
        self.encoder = networks.make_encoder(
            s.architecture, self.data_shape, features,
            hidden_units=s.hidden_units[:-1], activation=s.activation,
            conv_filters=s.conv_filters, resnet_blocks=s.resnet_blocks,
            dtype_policy=dtype_policy)
        self.paths = HIERARCHIES[s.hierarchy](
            s.latent_dim, features + self.num_classes, s, self.context_units,
            dtype_policy)
        self.decoder = networks.make_decoder(
            s.architecture, self.paths.decoder_input_size + self.num_classes,
            self.data_shape, num_params=self.likelihood.num_params,
            hidden_units=s.hidden_units, activation=s.activation,
            conv_filters=s.conv_filters, resnet_blocks=s.resnet_blocks,
            dtype_policy=dtype_policy)
        self._prior = parts.make_prior(s, self.latent_dim, self.data_shape,
                                       self._top_base_posterior, seed)
        self.flow = (parts.make_flow(s, self.latent_dim, self.context_units)
                     if s.posterior_flow != "none" else None)

    # ------------------------------------------------------------------ #
    # Distributions.

    def _features(self, x, labels):
        h = tf.cast(self.encoder(self.check_x(x)), tf.float32)
        h = networks.get_activation(self.settings.activation)(h)
        if self.num_classes:
            h = tf.concat([h, tf.one_hot(labels, self.num_classes)], axis=-1)
        return h

    def _top_node(self, loc, scale, context):
        base = gaussian(loc, scale)
        if self.flow is None:
            return base
        return tfd.TransformedDistribution(base, self.flow(context))

    def _top_base_posterior(self, u) -> tfd.MultivariateNormalDiag:
        loc, scale, _ = self.paths.top_params(self._features(u, None))
        return gaussian(loc, scale)

    def encode(self, x, labels=None) -> tfd.JointDistributionNamed:
        """q(z|x): a joint distribution over "z1", ..., "zL" (batch [N])."""
        labels = self.check_labels(labels)
        return self.paths.posterior(self._features(x, labels), self._top_node)

    @property
    def prior(self) -> tfd.JointDistributionNamed:
        """p(z): the top layer's prior, then p(z_l|z_{l+1}) down to z_1."""
        return self.paths.prior(self._prior())

    def decode(self, z, labels=None) -> tfd.Distribution:
        """p(x|z) for z a dict "z1".."zL" (or the list [z1, ..., zL]) with
        any leading batch dimensions."""
        labels = self.check_labels(labels)
        if isinstance(z, (list, tuple)):
            z = {layer_name(l): v for l, v in enumerate(z, start=1)}
        v = tf.convert_to_tensor(self.paths.decoder_input(z), tf.float32)
        if self.num_classes:
            v = parts.with_labels(v, labels, self.num_classes)
        batch_shape = tf.shape(v)[:-1]
        params = tf.cast(self.decoder(tf.reshape(v, [-1, v.shape[-1]])),
                         tf.float32)
        params = tf.reshape(params, tf.concat(
            [batch_shape, self.data_shape, [self.likelihood.num_params]], 0))
        return self.likelihood(params)

    def decode_top(self, z_top, labels=None, lower: str = "mean",
                   seed=None) -> tfd.Distribution:
        z_top = tf.convert_to_tensor(z_top, tf.float32)
        z = self.paths.lower_layers(z_top, lower, as_seed(seed))
        return self.decode(z, self.check_labels(labels, z_top.shape[0]))

    def posterior_mean(self, x, labels=None) -> tf.Tensor:
        """The top layer's posterior mean (through the flow, if any)."""
        loc, _, context = self.paths.top_params(
            self._features(x, self.check_labels(labels)))
        if self.flow is None:
            return loc
        return self.flow(context).forward(loc)

    def layer_means(self, x, labels=None) -> list[tf.Tensor]:
        """Each layer's posterior mean at the means of the others, nearest
        the data first (before the top layer's flow)."""
        return self.paths.posterior_means(
            self._features(x, self.check_labels(labels)))

    @property
    def has_analytic_kl(self) -> bool:
        return self.flow is None and self._prior.has_analytic_kl

    def no_analytic_kl_reason(self) -> str:
        reasons = []
        if self.flow is not None:
            reasons.append("the top layer's flow")
        if not self._prior.has_analytic_kl:
            reasons.append(f"the {self._prior.key!r} prior")
        return " and ".join(reasons)

    @property
    def output_size(self) -> int:
        return super().output_size * self.likelihood.num_params

    def initialize_from_data(self, x, rng, labels=None) -> bool:
        """Starts a VampPrior's pseudo-inputs at training examples."""
        del labels
        return parts.init_vamp_from_data(self._prior, self.check_x, x, rng)

    # ------------------------------------------------------------------ #
    # Configuration.

    def get_config(self) -> dict:
        config = self.settings.to_dict()
        scale = config["gaussian_scale"]
        config.update(
            family=self.family, data_shape=list(self.data_shape),
            num_classes=self.num_classes,
            posterior_flow=(None if config["posterior_flow"] == "none"
                            else config["posterior_flow"]),
            flow_context_units=self.context_units,
            gaussian_scale=scale if scale in ("learned", "decoder")
            else float(scale), **self._extra_config)
        return config

    @classmethod
    def config_defaults(cls) -> dict:
        return parts.config_defaults(super().config_defaults())


parts.spell_out_settings(HierarchicalVAE)
