"""tfpvae: variational autoencoders on TensorFlow Probability.

    import tfpvae
    model = tfpvae.VAE(latent_dim=20, data_shape=(28, 28, 1))
    out = model.elbo(x)                  # ELBOResult(elbo, rate, distortion, objective, layer_rates, extras)
    x_new = model.sample(16, seed=0)
    model = tfpvae.load("runs/mnist")    # a model trained with `python -m tfpvae.main`

The names below load on first use (PEP 562), so that `python -m
tfpvae.main` can quiet TensorFlow's start-up log and catch a signal before
TensorFlow is imported.
"""

import importlib

#: Public name -> the module that defines it.
_NAMES = {"VAE": "tfpvae.models", "LatentVariableModel": "tfpvae.models",
          "ELBOResult": "tfpvae.objectives", "load": "tfpvae.run_dir"}

__all__ = ["VAE", "ELBOResult", "LatentVariableModel", "load"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfpvae' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_NAMES))
