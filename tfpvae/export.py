"""Export of a trained model as a TensorFlow SavedModel that needs no tfpvae.

`export_saved_model(model, export_dir)` writes a SavedModel with three
signatures, whose graphs hold only TensorFlow ops, so it loads with
`tf.saved_model.load` in a process that has neither tfpvae nor TensorFlow
Probability installed:

    encode(x: float32 [N, *data_shape]) ->
        loc [N, latent_dim]                          the posterior mean of
                                                     the top latent layer
        scale [N, latent_dim]                        (one Gaussian layer:)
                                                     q0(z|x) = N(loc, scale^2)
        sample [N, latent_dim]                       z ~ q(z|x), top layer
                                                     (through the flow, if any)
    decode(z: float32 [N, latent_dim]) ->
        mean [N, *data_shape]                        E[x|z] (lower layers at
                                                     their prior means)
        params [N, *data_shape, P]                   (one layer:) the decoder's
                                                     raw output (logits for
                                                     Bernoulli)
    sample(n: int32 scalar) ->
        images [n, *data_shape]                      E[x|z] for z ~ p(z)
        samples [n, *data_shape]                     x ~ p(x|z)
        z [n, latent_dim]                            the top layer's z

A model with labels (a conditional or semi-supervised model) takes one more
input in every signature, `labels`: int32 [N] (for `sample`, [n]), the
classes to encode, decode or draw, and `sample` also returns them
(`labels` [n]). A conditional model needs every label in [0, K); a
semi-supervised model (M2) reads a label of -1 as "not given", as its
Python methods read labels=None: `encode` then takes the classifier's most
likely class and `sample` draws y ~ p(y). M2 has a fourth signature:

    classify(x) ->
        probs [N, K]                                 q(y|x)
        labels [N]                                   its most likely class

A label out of range fails the call with an InvalidArgumentError that
names the range. Random draws inside the SavedModel use TensorFlow's global
generator (they are not seeded). Example:

    loaded = tf.saved_model.load("runs/mnist/saved_model")
    images = loaded.signatures["sample"](n=tf.constant(16))["images"]
    codes = loaded.encode(x)["loc"]
    digits = loaded.sample(n=tf.constant(16), labels=tf.fill([16], -1))

A trained model directory is exported from Python with
`export_saved_model(tfpvae.load(model_dir), path)`, or by training with
`--export`.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from tfpvae.models import LatentVariableModel
from tfpvae.models import parts


def _top(z):
    """The top layer of a draw z (a dict "z1".."zL" for several layers)."""
    if isinstance(z, dict):
        return z[max(z, key=lambda key: int(key[1:]))]
    return z


class _ExportedModel(tf.Module):
    """The model's variables and the three exported functions."""

    def __init__(self, model: LatentVariableModel):
        super().__init__(name="vae")
        self.model = model
        labelled = model.num_classes > 0
        x_spec = tf.TensorSpec([None, *model.data_shape], tf.float32, name="x")
        z_spec = tf.TensorSpec([None, model.latent_dim], tf.float32, name="z")
        n_spec = tf.TensorSpec([], tf.int32, name="n")
        label_spec = [tf.TensorSpec([None], tf.int32, name="labels")] * labelled
        self.encode = tf.function(self._encode,
                                  input_signature=[x_spec, *label_spec])
        self.decode = tf.function(self._decode,
                                  input_signature=[z_spec, *label_spec])
        self.sample = tf.function(self._sample,
                                  input_signature=[n_spec, *label_spec])
        if self._semi_supervised:
            self.classify = tf.function(self._classify,
                                        input_signature=[x_spec])

    @property
    def _semi_supervised(self):
        """Whether labels may be missing (M2: -1 entries), else all needed."""
        return self.model.num_classes > 0 and not self.model.conditions_on_labels

    def signatures(self):
        """The exported functions by signature name."""
        functions = {"encode": self.encode, "decode": self.decode,
                     "sample": self.sample}
        if self._semi_supervised:
            functions["classify"] = self.classify
        return functions

    def _labels(self, labels, missing=None):
        """labels checked in the graph; for M2, each -1 replaced by the
        entry of missing() (a tensor of labels, or a function giving one)."""
        if labels is None:
            return None
        k = self.model.num_classes
        lowest = -1 if self._semi_supervised and missing is not None else 0
        message = (f"labels must lie in [{lowest}, {k})"
                   + (" (-1: not given)" if lowest < 0 else ""))
        with tf.control_dependencies([
                tf.debugging.assert_greater_equal(labels, lowest,
                                                  message=message),
                tf.debugging.assert_less(labels, k, message=message)]):
            labels = tf.identity(labels)
        if lowest < 0:
            labels = tf.where(labels < 0, missing(), labels)
        return labels

    def _single_gaussian_layer(self):
        """The VAE of one Gaussian layer whose q0(z|x) and decoder output
        the signatures show (M2's conditional VAE), else None."""
        vae = getattr(self.model, "vae", self.model)
        if len(self.model.latent_sizes) == 1 and hasattr(vae, "flow"):
            return vae
        return None

    def _encode(self, x, labels=None):
        # The labels given are the classes to encode, for M2 too (without
        # them its posterior_mean would take the classifier's guess).
        labels = self._labels(labels, lambda: self._classify(x)["labels"])
        posterior = self.model.encode(x, labels)
        outputs = {"loc": self.model.posterior_mean(x, labels),
                   "sample": _top(posterior.sample())}
        vae = self._single_gaussian_layer()
        if vae is not None:
            # With a flow, q(z|x) transforms the diagonal Gaussian q0(z|x).
            base = posterior if vae.flow is None else posterior.distribution
            outputs.update(loc=base.mean(), scale=base.stddev())
        return outputs

    def _decode(self, z, labels=None):
        labels = self._labels(labels)
        outputs = {"mean": self.model.decode_top(z, labels).mean()}
        vae = self._single_gaussian_layer()
        if vae is not None:
            decoder_input = (z if not vae.num_classes else
                             parts.with_labels(z, labels, vae.num_classes))
            outputs["params"] = tf.reshape(
                tf.cast(vae.decoder(decoder_input), tf.float32),
                [-1, *vae.data_shape, vae.likelihood.num_params])
        return outputs

    def _sample(self, n, labels=None):
        if labels is not None:
            # One label per example: a mismatch is the caller's error.
            tf.debugging.assert_equal(
                tf.size(labels), n,
                message="sample needs one label per example: labels of "
                        "shape [n]")
        labels = self._labels(
            labels, lambda: self.model.label_prior.sample(n, seed=None))
        z = self.model.prior.sample(n)
        likelihood = self.model.decode(z, labels)
        outputs = {"images": likelihood.mean(),
                   "samples": tf.cast(likelihood.sample(), tf.float32),
                   "z": _top(z)}
        if labels is not None:
            outputs["labels"] = labels
        return outputs

    def _classify(self, x):
        probs = self.model.classify(x).probs_parameter()
        return {"probs": probs,
                "labels": tf.argmax(probs, axis=-1, output_type=tf.int32)}


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
    module = _ExportedModel(model)
    tmp_dir = export_dir.rstrip("/\\") + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tf.saved_model.save(module, tmp_dir, signatures=module.signatures())
    shutil.rmtree(export_dir, ignore_errors=True)
    os.replace(tmp_dir, export_dir)
    return export_dir
