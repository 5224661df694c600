"""tfpvae: variational autoencoders on TensorFlow Probability.

    import tfpvae
    model = tfpvae.VAE(latent_dim=20, data_shape=(28, 28, 1))
    out = model.elbo(x)                  # ELBOResult(elbo, rate, distortion, objective, layer_rates)
    x_new = model.sample(16, seed=0)
    model = tfpvae.load("runs/mnist")    # a model trained with `python -m tfpvae.main`
"""

from tfpvae.models import LatentVariableModel
from tfpvae.models import VAE
from tfpvae.objectives import ELBOResult
from tfpvae.run_dir import load

__all__ = ["VAE", "ELBOResult", "LatentVariableModel", "load"]
__version__ = "0.1.0"
