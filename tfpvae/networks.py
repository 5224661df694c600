"""Encoder and decoder networks (MLP and convolutional), built from tf_keras.

The networks return plain tensors; `tfpvae.model.VAE` turns them into
distributions. Every layer is a `tf_keras` layer (never Keras 3), so that
`tf.Module.trainable_variables` of the model collects all of them.

* Encoder: `x [N, *data_shape] -> h [N, output_units]`. The VAE asks for
    `2 * latent_dim` units (posterior loc and pre-softplus scale) plus the size of
    an optional context vector for a conditional flow.
* Decoder: `z [N, latent_dim] -> params [N, *data_shape, num_params]`, where
    `num_params` is the number of distribution parameters per data dimension
    (1 for Bernoulli logits, 2 for a Gaussian with a learned per-pixel scale).

The convolutional networks follow the Keras VAE tutorial: strided 3x3
convolutions halve the resolution (encoder) and transposed convolutions double
it (decoder). Sizes that are not a multiple of 2**len(filters) are handled by
starting the decoder at the rounded-up size and cropping the output.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import tensorflow as tf
import tf_keras

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
        "relu": tf.nn.relu,
        "leaky_relu": tf.nn.leaky_relu,
        "elu": tf.nn.elu,
        "tanh": tf.math.tanh,
        "sigmoid": tf.math.sigmoid,
        "softplus": tf.math.softplus,
        "swish": tf.nn.silu,
        "gelu": tf.nn.gelu,
}

ARCHITECTURES = ("mlp", "conv")


def get_activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns the activation function registered under `name`."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
                f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}."
        ) from None


def _policy(dtype_policy):
    return tf_keras.mixed_precision.Policy(dtype_policy or "float32")


def make_encoder(
        architecture: str,
        data_shape: Sequence[int],
        output_units: int,
        hidden_units: Sequence[int] = (500, 500),
        activation: str = "relu",
        conv_filters: Sequence[int] = (32, 64),
        dtype_policy: str | None = None,
) -> tf_keras.Sequential:
    """Builds an encoder network `x -> h` of the named architecture.

    Args:
        architecture: "mlp" or "conv".
        data_shape: Shape of one example, e.g. (28, 28, 1) or (18,).
        output_units: Width of the output layer.
        hidden_units: Widths of the dense hidden layers (after the convolutions
            for "conv").
        activation: Name of a hidden activation in `ACTIVATIONS`.
        conv_filters: Filters of the strided convolutions ("conv" only).
        dtype_policy: tf_keras mixed-precision policy name ("mixed_bfloat16",
            "mixed_float16") or None for float32.

    Returns:
        A built `tf_keras.Sequential`; its output is float32 `[N, output_units]`.
    """
    act = get_activation(activation)
    policy = _policy(dtype_policy)
    data_shape = tuple(int(d) for d in data_shape)
    layers = [tf_keras.layers.InputLayer(input_shape=data_shape)]
    if architecture == "conv":
        _check_conv_shape(data_shape)
        for f in conv_filters:
            layers.append(tf_keras.layers.Conv2D(
                    f, 3, strides=2, padding="same", activation=act, dtype=policy))
    elif architecture != "mlp":
        raise ValueError(
                f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")
    layers.append(tf_keras.layers.Flatten(dtype=policy))
    for units in hidden_units:
        layers.append(tf_keras.layers.Dense(units, activation=act, dtype=policy))
    layers.append(tf_keras.layers.Dense(output_units, dtype=policy))
    layers.append(tf_keras.layers.Activation("linear", dtype="float32"))
    return tf_keras.Sequential(layers, name=f"{architecture}_encoder")


def make_decoder(
        architecture: str,
        latent_dim: int,
        data_shape: Sequence[int],
        num_params: int = 1,
        hidden_units: Sequence[int] = (500, 500),
        activation: str = "relu",
        conv_filters: Sequence[int] = (32, 64),
        dtype_policy: str | None = None,
) -> tf_keras.Sequential:
    """Builds a decoder network `z -> params [N, *data_shape, num_params]`.

    The MLP decoder mirrors the encoder (hidden layers in reverse order); the
    convolutional decoder maps z through the dense layers to a small feature map
    and upsamples it with stride-2 transposed convolutions.

    Args: as `make_encoder`, plus `latent_dim` and `num_params` (distribution
        parameters per data dimension).

    Returns:
        A built `tf_keras.Sequential` with float32 output.
    """
    act = get_activation(activation)
    policy = _policy(dtype_policy)
    data_shape = tuple(int(d) for d in data_shape)
    layers = [tf_keras.layers.InputLayer(input_shape=(latent_dim,))]
    for units in reversed(tuple(hidden_units)):
        layers.append(tf_keras.layers.Dense(units, activation=act, dtype=policy))
    if architecture == "mlp":
        layers.append(tf_keras.layers.Dense(
                math.prod(data_shape) * num_params, dtype=policy))
    elif architecture == "conv":
        _check_conv_shape(data_shape)
        height, width, channels = data_shape
        factor = 2 ** len(conv_filters)
        h0, w0 = math.ceil(height / factor), math.ceil(width / factor)
        filters = tuple(reversed(tuple(conv_filters)))
        layers.append(tf_keras.layers.Dense(h0 * w0 * filters[0], activation=act,
                                                                                dtype=policy))
        layers.append(tf_keras.layers.Reshape((h0, w0, filters[0]), dtype=policy))
        for f in filters:
            layers.append(tf_keras.layers.Conv2DTranspose(
                    f, 3, strides=2, padding="same", activation=act, dtype=policy))
        layers.append(tf_keras.layers.Conv2DTranspose(
                channels * num_params, 3, strides=1, padding="same", dtype=policy))
        crop_h, crop_w = h0 * factor - height, w0 * factor - width
        if crop_h or crop_w:
            layers.append(tf_keras.layers.Cropping2D(
                    ((0, crop_h), (0, crop_w)), dtype=policy))
    else:
        raise ValueError(
                f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")
    layers.append(tf_keras.layers.Reshape(data_shape + (num_params,),
                                                                                dtype=policy))
    layers.append(tf_keras.layers.Activation("linear", dtype="float32"))
    return tf_keras.Sequential(layers, name=f"{architecture}_decoder")


def _check_conv_shape(data_shape):
    if len(data_shape) != 3:
        raise ValueError(
                f"architecture='conv' needs image data of shape (height, width, "
                f"channels); got data_shape={data_shape}. Use architecture='mlp' for "
                f"vectors.")
