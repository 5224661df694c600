"""tfpvae: variational autoencoders on TensorFlow Probability.

    import tfpvae
    model = tfpvae.VAE(latent_dim=20, data_shape=(28, 28, 1))
    out = model.elbo(x)                  # ELBOResult(elbo, rate, distortion, objective)
    x_new = model.sample(16, seed=0)
    model = tfpvae.load("runs/mnist")    # a model trained with `python -m tfpvae.main`
"""

from tfpvae.model import VAE
from tfpvae.objectives import ELBOResult
from tfpvae.saving import load

__all__ = ["VAE", "ELBOResult", "load"]
__version__ = "0.1.0"
