"""Model families: the registry, and building a model from its settings.

`FAMILIES` maps a family's name (the "family" of model_config.json) to its
class, a `LatentVariableModel`. `from_config` rebuilds any registered model
from `get_config()`; `build_model` builds the model a training run's
settings describe. A new family registers itself with `register` (see
docs/howto/model_family.md).
"""

from __future__ import annotations

from typing import Sequence

from tfpvae.models.base import LatentVariableModel
from tfpvae.models.hierarchy import HierarchicalVAE
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
        num_classes: Label classes to condition on (0: none).
    """
    return VAE(**config.model_settings(), data_shape=data_shape,
               num_classes=num_classes,
               dtype_policy=(None if config.mixed_precision == "none"
                             else config.mixed_precision),
               seed=config.seed)


__all__ = ["FAMILIES", "HierarchicalVAE", "LatentVariableModel", "VAE",
           "build_model",
           "complete_config", "from_config", "register"]
