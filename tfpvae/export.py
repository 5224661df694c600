"""Export of a trained VAE as a TensorFlow SavedModel that needs no tfpvae.

`export_saved_model(model, export_dir)` writes a SavedModel with three
signatures, whose graphs hold only TensorFlow ops, so it loads with
`tf.saved_model.load` in a process that has neither tfpvae nor TensorFlow
Probability installed:

    encode(x: float32 [N, *data_shape]) ->
        loc [N, latent_dim], scale [N, latent_dim]   q0(z|x) = N(loc, scale^2)
        sample [N, latent_dim]                       z ~ q(z|x) (through the
                                                     flow, if the model has one)
    decode(z: float32 [N, latent_dim]) ->
        mean [N, *data_shape]                        E[x|z]
        params [N, *data_shape, P]                   the decoder's raw output
                                                     (logits for Bernoulli)
    sample(n: int32 scalar) ->
        images [n, *data_shape]                      E[x|z] for z ~ p(z)
        samples [n, *data_shape]                     x ~ p(x|z)
        z [n, latent_dim]

Random draws inside the SavedModel use TensorFlow's global generator (they
are not seeded). Example:

    loaded = tf.saved_model.load("runs/mnist/saved_model")
    images = loaded.signatures["sample"](n=tf.constant(16))["images"]
    codes = loaded.encode(x)["loc"]

A trained model directory is exported from Python with
`export_saved_model(tfpvae.load(model_dir), path)`, or by training with
`--export`.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from tfpvae.models import LatentVariableModel


class _ExportedVAE(tf.Module):
    """The model's variables and the three exported functions."""

    def __init__(self, model: LatentVariableModel):
        super().__init__(name="vae")
        self.model = model
        data_spec = tf.TensorSpec([None, *model.data_shape], tf.float32,
                                  name="x")
        latent_spec = tf.TensorSpec([None, model.latent_dim], tf.float32,
                                    name="z")
        self.encode = tf.function(self._encode, input_signature=[data_spec])
        self.decode = tf.function(self._decode, input_signature=[latent_spec])
        self.sample = tf.function(
            self._sample, input_signature=[tf.TensorSpec([], tf.int32, name="n")])

    def _encode(self, x):
        posterior = self.model.encode(x)
        # With a flow, q(z|x) transforms the diagonal Gaussian q0(z|x).
        base = posterior if self.model.flow is None else posterior.distribution
        return {"loc": base.mean(), "scale": base.stddev(),
                "sample": posterior.sample()}

    def _decode(self, z):
        likelihood = self.model.decode(z)
        params = tf.reshape(
            tf.cast(self.model.decoder(z), tf.float32),
            [-1, *self.model.data_shape, self.model.likelihood.num_params])
        return {"mean": likelihood.mean(), "params": params}

    def _sample(self, n):
        z = self.model.prior.sample(n)
        likelihood = self.model.decode(z)
        return {"images": likelihood.mean(),
                "samples": tf.cast(likelihood.sample(), tf.float32), "z": z}


def export_saved_model(model: LatentVariableModel, export_dir: str) -> str:
    """Writes `model` as a SavedModel to `export_dir`, replacing an old one.

    The SavedModel is written next to `export_dir` first and moved into
    place when complete.

    Args:
        model: A (trained) VAE.
        export_dir: The SavedModel directory.

    Returns:
        `export_dir`.
    """
    module = _ExportedVAE(model)
    tmp_dir = export_dir.rstrip("/\\") + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tf.saved_model.save(module, tmp_dir, signatures={
        "encode": module.encode, "decode": module.decode,
        "sample": module.sample})
    shutil.rmtree(export_dir, ignore_errors=True)
    os.replace(tmp_dir, export_dir)
    return export_dir
