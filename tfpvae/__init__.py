"""tfpvae: variational autoencoders on TensorFlow Probability.

    import tfpvae
    model = tfpvae.VAE(latent_dim=20, data_shape=(28, 28, 1))
    out = model.elbo(x)                  # ELBOResult(elbo, rate, distortion, objective, layer_rates, extras)
    x_new = model.sample(16, seed=0)
    model = tfpvae.load("runs/mnist")    # a model trained with `python -m tfpvae.main`
    model = tfpvae.load_pretrained("conditional_mnist")  # one that ships (tfpvae.pretrained)

The names below load on first use (PEP 562), so that `python -m
tfpvae.main` can quiet TensorFlow's start-up log and catch a signal before
TensorFlow is imported.
"""

import importlib

#: Public name -> the module that defines it, and its name there.
_NAMES = {"VAE": ("tfpvae.models", "VAE"),
          "LatentVariableModel": ("tfpvae.models", "LatentVariableModel"),
          "ELBOResult": ("tfpvae.objectives", "ELBOResult"),
          "load": ("tfpvae.run_dir", "load"),
          "load_pretrained": ("tfpvae.pretrained", "load")}
#: Submodules reachable as attributes without importing them first.
_SUBMODULES = ("pretrained",)

__all__ = ["VAE", "ELBOResult", "LatentVariableModel", "load",
           "load_pretrained"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _NAMES:
        module, attribute = _NAMES[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"tfpvae.{name}")
    raise AttributeError(f"module 'tfpvae' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_NAMES) + list(_SUBMODULES))
