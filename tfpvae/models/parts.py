"""The parts that every family built from `tfpvae.config.ModelConfig` shares
(`tfpvae.models.vae.VAE`, `tfpvae.models.hierarchy.HierarchicalVAE`): the
checked settings of a model's arguments, its likelihood, prior and flow
modules, labels appended to a network's input, the VampPrior's start from
data, the spelled-out signature and the configuration defaults."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import tensorflow as tf

from tfpvae import flows as flows_lib
from tfpvae import likelihoods as likelihoods_lib
from tfpvae import priors as priors_lib
from tfpvae.config import ModelConfig


def model_settings(latent_dim, posterior_flow, gaussian_scale,
                   settings: dict) -> ModelConfig:
    """The `ModelConfig` of a model's arguments: a flow object counts as
    "none" for the checks, a number as the scale's text.

    Raises:
        TypeError: For an argument that is not a setting.
        ValueError: For invalid values (the command line's messages).
    """
    unknown = set(settings) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise TypeError(f"Unknown model arguments {sorted(unknown)}; see "
                        f"tfpvae.config.ModelConfig for the settings.")
    sizes = latent_dim if isinstance(latent_dim, (list, tuple)) else [latent_dim]
    if not sizes or not all(isinstance(d, (int, np.integer)) and d > 0
                            for d in sizes):
        raise ValueError(f"latent_dim must be a positive integer (or several); "
                         f"got {latent_dim!r}.")
    flow_name = posterior_flow if isinstance(posterior_flow, str) else "none"
    if posterior_flow is not None and not isinstance(posterior_flow, str) \
            and not callable(posterior_flow):
        raise ValueError(
            f"posterior_flow must be None, one of {list(flows_lib.FLOWS)}, a "
            f"tfb.Bijector or a callable returning one; got {posterior_flow!r}.")
    return ModelConfig(latent_dim=tuple(int(d) for d in sizes),
                       posterior_flow=flow_name,
                       gaussian_scale=str(gaussian_scale), **settings)


def with_labels(v: tf.Tensor, labels, num_classes: int) -> tf.Tensor:
    """[v, one_hot(labels)] along the last axis, the labels [N] broadcast
    over v's leading sample dimensions (v [..., N, D])."""
    one_hot = tf.one_hot(labels, num_classes)
    return tf.concat([v, tf.broadcast_to(one_hot, tf.concat(
        [tf.shape(v)[:-1], [num_classes]], 0))], axis=-1)


def make_likelihood(settings: ModelConfig, data_shape):
    """The likelihood module of `settings.likelihood`."""
    scale = settings.gaussian_scale
    kwargs = {}
    if settings.likelihood == "gaussian":
        kwargs["scale"] = scale if scale in ("learned", "decoder") else float(scale)
    return likelihoods_lib.make_likelihood(settings.likelihood, data_shape,
                                           **kwargs)


def make_prior(settings: ModelConfig, size: int, data_shape, base_posterior,
               seed):
    """The prior module of `settings.prior` (`tfpvae.priors.PRIORS`) over a
    latent layer of `size` units; `base_posterior(x)` is the encoder's
    Gaussian of that layer (the VampPrior's components)."""
    cls = priors_lib.PRIORS[settings.prior]
    if cls.key == "normal":
        return cls(size)
    if cls.key == "vamp":
        return cls(size, data_shape, base_posterior,
                   components=settings.mixture_components, seed=seed)
    return cls(size, components=settings.mixture_components, seed=seed)


def make_flow(settings: ModelConfig, size: int, context_units: int):
    """The posterior flow of `settings.posterior_flow` over `size` units."""
    return flows_lib.FLOWS[settings.posterior_flow](
        size, num_layers=settings.flow_layers,
        hidden_units=settings.flow_hidden_units, context_dim=context_units,
        activation=settings.activation)


def init_vamp_from_data(prior_module, check_x, x, rng) -> bool:
    """Starts a VampPrior's pseudo-inputs at K examples of `x` drawn without
    replacement by `rng` (kept in their order); False for other priors."""
    if not isinstance(prior_module, priors_lib.VampPrior):
        return False
    index = rng.choice(len(x), min(prior_module.components, len(x)),
                       replace=False)
    prior_module.init_from_data(check_x(x[np.sort(index)]))
    return True


def spell_out_settings(cls) -> None:
    """Gives `cls.__init__(..., **settings)` (and the class) a signature with
    every `ModelConfig` field spelled out, in the fields' order after
    `data_shape`, then the arguments that are not settings."""
    own = inspect.signature(cls.__init__)
    params = dict(own.parameters)
    del params["settings"]
    front = [params.pop(name) for name in ("self", "latent_dim", "data_shape")]
    settings = [params.pop(f.name, None) or inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in dataclasses.fields(ModelConfig) if f.name != "latent_dim"]
    signature = own.replace(parameters=front + settings + list(params.values()))
    cls.__init__.__signature__ = signature
    # Else inspect.signature(VAE) shows __new__'s (latent_dim, *args, **kwargs).
    cls.__signature__ = signature.replace(
        parameters=list(signature.parameters.values())[1:])


def config_defaults(family_defaults: dict) -> dict:
    """The `get_config()` values of a model whose settings are all at their
    defaults: the `ModelConfig` fields, then `family_defaults` (the
    family's own, e.g. `LatentVariableModel.config_defaults()`)."""
    defaults = {f.name: list(f.default) if isinstance(f.default, tuple)
                else f.default for f in dataclasses.fields(ModelConfig)}
    defaults.update(family_defaults, posterior_flow=None,
                    custom_networks=False)
    return defaults
