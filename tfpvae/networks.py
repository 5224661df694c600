"""Encoder and decoder networks (MLP, convolutional, residual), from tf_keras.

The networks return plain tensors; `tfpvae.models.VAE` turns them into
distributions. Every layer is a `tf_keras` layer (never Keras 3), so that
`tf.Module.trainable_variables` of the model collects all of them.

* Encoder: `x [N, *data_shape] -> h [N, output_units]`. The VAE asks for
  `2 * latent_dim` units (posterior loc and pre-softplus scale) plus the size
  of an optional context vector for a conditional flow.
* Decoder: `z [N, latent_dim] -> params [N, *data_shape, num_params]`, where
  `num_params` is the number of distribution parameters per data dimension
  (1 for Bernoulli logits, 2 for a Gaussian with a learned per-pixel scale).

Every encoder ends the same way: flatten, the dense `hidden_units`, a linear
`Dense(output_units)`; every decoder starts with the dense `hidden_units` in
reverse order. The architectures differ in what comes before (encoder) and
after (decoder) the dense layers (`ARCHITECTURES`):

* "mlp": nothing; the decoder's last layer is a `Dense(prod(data_shape) *
  num_params)`. Any data shape.
* "conv": the Keras VAE tutorial's networks. The encoder applies one stride-2
  3x3 convolution per entry of `conv_filters` (each halves the resolution);
  the decoder maps to the smallest feature map and doubles it with stride-2
  transposed convolutions, then a 3x3 convolution gives the parameters.
  Images `(height, width, channels)` only.
* "resnet": residual networks (He et al., 2016a) at the same resolutions as
  "conv". Encoder: a 3x3 stem convolution to `conv_filters[0]` channels, then
  for each entry f a stride-2 3x3 convolution to f channels followed by
  `resnet_blocks` residual blocks at f channels, then the activation. Decoder:
  a linear Dense to the smallest feature map, then for each resolution from
  the smallest: `resnet_blocks` residual blocks, and a nearest-neighbour 2x
  upsampling followed by a 3x3 convolution (which does not draw the
  checkerboard patterns of a stride-2 transposed convolution; Odena et al.,
  2016) to the next resolution's filters; then the activation and a 3x3
  convolution to the parameters. Images only.

A residual block (`ResidualBlock`) is the pre-activation block of He et al.
(2016b), without normalisation (batch statistics would couple the examples
of a batch, and so their likelihoods):

    y = x + conv2(act(conv1(act(x)))),    conv1, conv2: 3x3, same channels,

with the stream `x` itself never passed through an activation. The initial
kernel of conv2 is Glorot-uniform scaled by `RESIDUAL_INIT_SCALE` = 0.1, so
each block starts close to the identity (its branch adds a few per cent of
the input's scale) and a deep stack starts as a well-conditioned shallow
network (as Fixup, Zhang et al. 2019, and VDVAE, Child 2021, scale or zero
the last layer of each branch). A scale rather than zeros: with conv2 at
zero, conv1's gradient (which flows through conv2's kernel) would be exactly
zero at the first step.

Sizes that are not a multiple of 2**len(conv_filters) are handled by starting
the conv and resnet decoders at the rounded-up size and cropping the output
(the bottom rows and right columns).

#### References

He, K., Zhang, X., Ren, S. & Sun, J. (2016a). Deep residual learning for
image recognition. CVPR. https://arxiv.org/abs/1512.03385

He, K., Zhang, X., Ren, S. & Sun, J. (2016b). Identity mappings in deep
residual networks. ECCV. https://arxiv.org/abs/1603.05027

Odena, A., Dumoulin, V. & Olah, C. (2016). Deconvolution and checkerboard
artifacts. Distill. https://distill.pub/2016/deconv-checkerboard/

Zhang, H., Dauphin, Y. N. & Ma, T. (2019). Fixup initialization: residual
learning without normalization. ICLR. https://arxiv.org/abs/1901.09321

Child, R. (2021). Very deep VAEs generalize autoregressive models and can
outperform them on images. ICLR. https://arxiv.org/abs/2011.10650
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

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

#: Scale of the initial kernel of a residual block's last convolution,
#: relative to Glorot-uniform.
RESIDUAL_INIT_SCALE = 0.1


def get_activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns the activation function registered under `name`."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}."
        ) from None


@tf_keras.utils.register_keras_serializable(package="tfpvae")
class ResidualBlock(tf_keras.layers.Layer):
    """Pre-activation residual block: `y = x + conv2(act(conv1(act(x))))`.

    Both convolutions are 3x3 with `filters` channels and "same" padding, so
    `x` and `y` have the same shape `[N, H, W, filters]`. conv2's initial
    kernel is Glorot-uniform times `residual_scale`: the block starts close to
    the identity (exactly the identity for `residual_scale=0`, at the price of
    a zero gradient for conv1 at the first step).

    Args:
        filters: Channels of the input, the output and both convolutions.
        activation: Name of the activation in `ACTIVATIONS`.
        residual_scale: Scale of conv2's initial kernel.
        **kwargs: `tf_keras.layers.Layer` arguments (`name`, `dtype`); the
            convolutions use the block's dtype policy.
    """

    def __init__(self, filters: int, activation: str = "relu",
                 residual_scale: float = RESIDUAL_INIT_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.activation = activation
        self.residual_scale = float(residual_scale)
        self._act = get_activation(activation)
        self.conv1 = tf_keras.layers.Conv2D(
            self.filters, 3, padding="same", dtype=self.dtype_policy,
            name="conv1")
        # residual_scale x Glorot-uniform (zeros for a scale of 0).
        initializer = (tf_keras.initializers.VarianceScaling(
            self.residual_scale ** 2, mode="fan_avg", distribution="uniform")
            if self.residual_scale else "zeros")
        self.conv2 = tf_keras.layers.Conv2D(
            self.filters, 3, padding="same", kernel_initializer=initializer,
            dtype=self.dtype_policy, name="conv2")

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 4 or input_shape[-1] != self.filters:
            raise ValueError(
                f"{self.name} expects [N, H, W, {self.filters}] inputs; got "
                f"{input_shape}.")
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        super().build(input_shape)

    def call(self, x):
        h = self.conv1(self._act(x))     # [N, H, W, filters]
        return x + self.conv2(self._act(h))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "activation": self.activation,
                "residual_scale": self.residual_scale}


@dataclasses.dataclass(frozen=True)
class _Net:
    """The settings an architecture's layers are built from."""
    activation: str
    policy: tf_keras.mixed_precision.Policy
    conv_filters: tuple[int, ...]
    resnet_blocks: int

    @property
    def act(self) -> Callable[[tf.Tensor], tf.Tensor]:
        return get_activation(self.activation)

    def blocks(self, filters: int) -> list[ResidualBlock]:
        """`resnet_blocks` new residual blocks at `filters` channels."""
        if self.resnet_blocks < 0:
            raise ValueError(f"resnet_blocks must be >= 0; got "
                             f"{self.resnet_blocks}.")
        return [ResidualBlock(filters, self.activation, dtype=self.policy)
                for _ in range(self.resnet_blocks)]


# --------------------------------------------------------------------------
# Encoder features: the layers before Flatten. Decoder outputs: the layers
# after the dense hidden layers, to [N, prod(data_shape) * num_params] or
# [N, H, W, C * num_params].

def _mlp_features(data_shape, net: _Net) -> list:
    return []


def _mlp_output(data_shape, num_params, net: _Net) -> list:
    return [tf_keras.layers.Dense(math.prod(data_shape) * num_params,
                                  dtype=net.policy)]


def _conv_features(data_shape, net: _Net) -> list:
    return [tf_keras.layers.Conv2D(f, 3, strides=2, padding="same",
                                   activation=net.act, dtype=net.policy)
            for f in net.conv_filters]


def _conv_output(data_shape, num_params, net: _Net) -> list:
    channels = data_shape[-1]
    h0, w0 = _smallest_map(data_shape, net)
    filters = tuple(reversed(net.conv_filters))
    layers = [
        tf_keras.layers.Dense(h0 * w0 * filters[0], activation=net.act,
                              dtype=net.policy),
        tf_keras.layers.Reshape((h0, w0, filters[0]), dtype=net.policy)]
    for f in filters:
        layers.append(tf_keras.layers.Conv2DTranspose(
            f, 3, strides=2, padding="same", activation=net.act,
            dtype=net.policy))
    layers.append(tf_keras.layers.Conv2DTranspose(
        channels * num_params, 3, strides=1, padding="same", dtype=net.policy))
    return layers + _crop(data_shape, net)


def _resnet_features(data_shape, net: _Net) -> list:
    p = net.policy
    layers = [tf_keras.layers.Conv2D(net.conv_filters[0], 3, padding="same",
                                     dtype=p, name="stem")]
    for f in net.conv_filters:                      # [N, H/2^i, W/2^i, f]
        layers += [tf_keras.layers.Activation(net.act, dtype=p),
                   tf_keras.layers.Conv2D(f, 3, strides=2, padding="same",
                                          dtype=p)]
        layers += net.blocks(f)
    return layers + [tf_keras.layers.Activation(net.act, dtype=p)]


def _resnet_output(data_shape, num_params, net: _Net) -> list:
    p, channels = net.policy, data_shape[-1]
    h0, w0 = _smallest_map(data_shape, net)
    filters = tuple(reversed(net.conv_filters))     # Smallest map first.
    layers = [tf_keras.layers.Dense(h0 * w0 * filters[0], dtype=p),
              tf_keras.layers.Reshape((h0, w0, filters[0]), dtype=p)]
    for f, f_up in zip(filters, filters[1:] + filters[-1:]):
        layers += net.blocks(f)
        layers += [tf_keras.layers.Activation(net.act, dtype=p),
                   tf_keras.layers.UpSampling2D(2, dtype=p),
                   tf_keras.layers.Conv2D(f_up, 3, padding="same", dtype=p)]
    layers += [tf_keras.layers.Activation(net.act, dtype=p),
               tf_keras.layers.Conv2D(channels * num_params, 3,
                                      padding="same", dtype=p)]
    return layers + _crop(data_shape, net)


def _smallest_map(data_shape, net: _Net) -> tuple[int, int]:
    """(height, width) of the smallest feature map, rounded up."""
    factor = 2 ** len(net.conv_filters)
    return math.ceil(data_shape[0] / factor), math.ceil(data_shape[1] / factor)


def _crop(data_shape, net: _Net) -> list:
    """Crops a decoder's output at the rounded-up size to `data_shape`."""
    factor = 2 ** len(net.conv_filters)
    h0, w0 = _smallest_map(data_shape, net)
    crop_h, crop_w = h0 * factor - data_shape[0], w0 * factor - data_shape[1]
    if not (crop_h or crop_w):
        return []
    return [tf_keras.layers.Cropping2D(((0, crop_h), (0, crop_w)),
                                       dtype=net.policy)]


class _Architecture(NamedTuple):
    encoder_features: Callable[..., list]
    decoder_output: Callable[..., list]
    images_only: bool


_ARCHITECTURES: dict[str, _Architecture] = {
    "mlp": _Architecture(_mlp_features, _mlp_output, images_only=False),
    "conv": _Architecture(_conv_features, _conv_output, images_only=True),
    "resnet": _Architecture(_resnet_features, _resnet_output,
                            images_only=True),
}

#: The names of the architectures: ("mlp", "conv", "resnet").
ARCHITECTURES = tuple(_ARCHITECTURES)


def _architecture(name: str, data_shape: tuple[int, ...],
                  net: _Net) -> _Architecture:
    """The registered architecture `name`, checked against the data."""
    try:
        architecture = _ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown architecture {name!r}; choose one of "
                         f"{ARCHITECTURES}.") from None
    if architecture.images_only:
        if len(data_shape) != 3:
            raise ValueError(
                f"architecture={name!r} needs image data of shape (height, "
                f"width, channels); got data_shape={data_shape}. Use "
                f"architecture='mlp' for vectors.")
        if not net.conv_filters:
            raise ValueError(f"architecture={name!r} needs at least one "
                             f"conv_filters entry.")
    return architecture


def _net(activation, dtype_policy, conv_filters, resnet_blocks) -> _Net:
    get_activation(activation)  # A one-line error for an unknown name.
    return _Net(activation,
                tf_keras.mixed_precision.Policy(dtype_policy or "float32"),
                tuple(int(f) for f in conv_filters), int(resnet_blocks))


def make_encoder(
    architecture: str,
    data_shape: Sequence[int],
    output_units: int,
    hidden_units: Sequence[int] = (500, 500),
    activation: str = "relu",
    conv_filters: Sequence[int] = (32, 64),
    dtype_policy: str | None = None,
    resnet_blocks: int = 2,
    label_units: int = 0,
) -> tf_keras.Sequential:
    """Builds an encoder network `x -> h` of the named architecture.

    Args:
        architecture: One of `ARCHITECTURES`: "mlp", "conv" or "resnet".
        data_shape: Shape of one example, e.g. (28, 28, 1) or (18,).
        output_units: Width of the output layer.
        hidden_units: Widths of the dense hidden layers (after the
            convolutions for "conv" and "resnet").
        activation: Name of a hidden activation in `ACTIVATIONS`.
        conv_filters: Filters of the stride-2 convolutions, one per halving
            of the resolution ("conv" and "resnet").
        dtype_policy: tf_keras mixed-precision policy name ("mixed_bfloat16",
            "mixed_float16") or None for float32.
        resnet_blocks: Residual blocks per resolution ("resnet"; the other
            architectures ignore it).
        label_units: With > 0, a `LabelledEncoder` called on `(x, y)`, y a
            `[N, label_units]` one-hot label, concatenated to the flattened
            features of x before the dense layers.

    Returns:
        A built `tf_keras.Sequential` (or `LabelledEncoder`); its output is
        float32 `[N, output_units]`.
    """
    data_shape = tuple(int(d) for d in data_shape)
    net = _net(activation, dtype_policy, conv_filters, resnet_blocks)
    body = _architecture(architecture, data_shape, net)
    p = net.policy
    features = [tf_keras.layers.InputLayer(input_shape=data_shape),
                *body.encoder_features(data_shape, net),
                tf_keras.layers.Flatten(dtype=p)]
    head = [tf_keras.layers.Dense(units, activation=net.act, dtype=p)
            for units in hidden_units]
    head += [tf_keras.layers.Dense(output_units, dtype=p),
             tf_keras.layers.Activation("linear", dtype="float32")]
    if not label_units:
        return tf_keras.Sequential(features + head,
                                   name=f"{architecture}_encoder")
    features = tf_keras.Sequential(features, name=f"{architecture}_features")
    width = int(features.output_shape[-1]) + label_units
    head = tf_keras.Sequential(
        [tf_keras.layers.InputLayer(input_shape=(width,))] + head,
        name="labelled_head")
    return LabelledEncoder(features, head, name=f"{architecture}_encoder")


class LabelledEncoder(tf_keras.layers.Layer):
    """An encoder of `(x, y)`: the features of x, the one-hot label y
    appended, then the dense layers (a conditional VAE's q(z|x, y)).

    Args:
        features: `x [N, *data_shape] -> [N, F]` (built).
        head: `[N, F + K] -> [N, output_units]` (built).
    """

    def __init__(self, features, head, **kwargs):
        super().__init__(**kwargs)
        self.features, self.head = features, head

    def call(self, inputs):
        x, labels = inputs
        h = self.features(x)
        return self.head(tf.concat([h, tf.cast(labels, h.dtype)], axis=-1))


def make_decoder(
    architecture: str,
    latent_dim: int,
    data_shape: Sequence[int],
    num_params: int = 1,
    hidden_units: Sequence[int] = (500, 500),
    activation: str = "relu",
    conv_filters: Sequence[int] = (32, 64),
    dtype_policy: str | None = None,
    resnet_blocks: int = 2,
) -> tf_keras.Sequential:
    """Builds a decoder network `z -> params [N, *data_shape, num_params]`.

    The dense hidden layers mirror the encoder's (in reverse order); "conv"
    and "resnet" then map to the smallest feature map and upsample it (see
    the module docstring).

    Args: as `make_encoder`, plus `latent_dim` and `num_params` (distribution
        parameters per data dimension).

    Returns:
        A built `tf_keras.Sequential` with float32 output.
    """
    data_shape = tuple(int(d) for d in data_shape)
    net = _net(activation, dtype_policy, conv_filters, resnet_blocks)
    body = _architecture(architecture, data_shape, net)
    p = net.policy
    layers = [tf_keras.layers.InputLayer(input_shape=(latent_dim,))]
    layers += [tf_keras.layers.Dense(units, activation=net.act, dtype=p)
               for units in reversed(tuple(hidden_units))]
    layers += body.decoder_output(data_shape, num_params, net)
    layers += [tf_keras.layers.Reshape(data_shape + (num_params,), dtype=p),
               tf_keras.layers.Activation("linear", dtype="float32")]
    return tf_keras.Sequential(layers, name=f"{architecture}_decoder")
