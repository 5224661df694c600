"""Model families: the registry, and building a model from its settings.

`FAMILIES` maps a family's name (the "family" of model_config.json) to its
class, a `LatentVariableModel`. `from_config` rebuilds any registered model
from `get_config()`; `build_model` builds the model a training run's
settings describe. A new family registers itself with `register` (see
docs/howto/model_family.md).
"""

from __future__ import annotations

from typing import Sequence

from tfpvae import hardware
from tfpvae.models.base import LatentVariableModel
from tfpvae.models.hierarchy import HierarchicalVAE
from tfpvae.models.semi_supervised import SemiSupervisedVAE
from tfpvae.models.vae import VAE

FAMILIES: dict[str, type[LatentVariableModel]] = {}


def register(cls: type[LatentVariableModel]) -> type[LatentVariableModel]:
    """Adds a family to `FAMILIES` under `cls.family` (usable as a class
    decorator); returns the class."""
    if not cls.family:
        raise ValueError(f"{cls.__name__}.family must name the family.")
    FAMILIES[cls.family] = cls
    return cls


register(VAE)
register(HierarchicalVAE)
register(SemiSupervisedVAE)


def from_config(config: dict) -> LatentVariableModel:
    """Rebuilds the model of a `get_config()` dict (untrained).

    A config without "family" was written before families existed: a VAE.

    Raises:
        ValueError: For a family that is not registered.
    """
    family = config.get("family", VAE.family)
    if family not in FAMILIES:
        raise ValueError(
            f"The model family {family!r} is not registered (known: "
            f"{sorted(FAMILIES)}); import the module that defines it first.")
    return FAMILIES[family].from_config(config)


def complete_config(config: dict) -> dict:
    """`config` with the family's defaults for the keys it lacks (settings
    added after it was written, which default to the earlier behaviour)."""
    family = FAMILIES.get(config.get("family", VAE.family))
    defaults = family.config_defaults() if family is not None else {}
    return {**defaults, **config}


def build_model(config, data_shape: Sequence[int], *,
                num_classes: int = 0) -> LatentVariableModel:
    """The model a training configuration describes.

    Args:
        config: A `tfpvae.config.TrainConfig`.
        data_shape: The shape of one example of the data.
        num_classes: The classes of the data's labels; a conditional or
            semi-supervised model is conditioned on them, any other model
            ignores them.
    """
    precision = hardware.resolve_mixed_precision(config.mixed_precision,
                                                 config.batch_size)
    arguments = dict(config.model_settings(), data_shape=data_shape,
                     dtype_policy=None if precision == "none" else precision,
                     seed=config.seed)
    if config.semi_supervised:
        return SemiSupervisedVAE(num_classes=num_classes, alpha=config.alpha,
                                 **arguments)
    return VAE(num_classes=num_classes if config.conditional else 0,
               **arguments)


__all__ = ["FAMILIES", "HierarchicalVAE", "LatentVariableModel",
           "SemiSupervisedVAE", "VAE",
           "build_model",
           "complete_config", "from_config", "register"]
