"""The encoder and decoder networks: shapes, gradients, residual blocks,
mixed precision, errors, and a resnet VAE end to end."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfpvae
from tfpvae import networks

SMALL = dict(hidden_units=(16,), conv_filters=(4, 8))

#: (data_shape, conv_filters): sizes that divide 2**len(filters), ones that
#: do not (30 = 32 - 2, 7 = 8 - 1), several channels.
SHAPES = [((28, 28, 1), (4, 8)), ((8, 8, 1), (4, 8)), ((30, 30, 3), (4, 8)),
          ((7, 7, 1), (4,))]


def residual_blocks(network):
    return [layer for layer in network.layers
            if isinstance(layer, networks.ResidualBlock)]


def test_registry():
    assert networks.ARCHITECTURES == ("mlp", "conv", "resnet")


@pytest.mark.parametrize("architecture", networks.ARCHITECTURES)
@pytest.mark.parametrize("data_shape, conv_filters", SHAPES)
def test_output_shapes(architecture, data_shape, conv_filters):
    tf_keras.utils.set_random_seed(0)
    x = tf.random.uniform((2,) + data_shape, seed=1)
    encoder = networks.make_encoder(
        architecture, data_shape, 6, hidden_units=(16,),
        conv_filters=conv_filters, resnet_blocks=1)
    assert encoder(x).shape == (2, 6) and encoder(x).dtype == tf.float32
    for num_params in (1, 2):
        decoder = networks.make_decoder(
            architecture, 3, data_shape, num_params=num_params,
            hidden_units=(16,), conv_filters=conv_filters, resnet_blocks=1)
        params = decoder(tf.random.normal((2, 3), seed=2))
        assert params.shape == (2,) + data_shape + (num_params,)
        assert params.dtype == tf.float32
        assert np.all(np.isfinite(params.numpy()))


@pytest.mark.parametrize("conv_filters", [(4,), (4, 8), (4, 8, 8)])
@pytest.mark.parametrize("resnet_blocks", [0, 1, 3])
def test_resnet_has_resnet_blocks_per_resolution(conv_filters, resnet_blocks):
    encoder = networks.make_encoder(
        "resnet", (8, 8, 1), 4, hidden_units=(8,), conv_filters=conv_filters,
        resnet_blocks=resnet_blocks)
    decoder = networks.make_decoder(
        "resnet", 2, (8, 8, 1), hidden_units=(8,), conv_filters=conv_filters,
        resnet_blocks=resnet_blocks)
    expected = resnet_blocks * len(conv_filters)
    assert len(residual_blocks(encoder)) == expected
    assert len(residual_blocks(decoder)) == expected
    # One block per resolution and entry of conv_filters, at its channels.
    channels = [b.filters for b in residual_blocks(encoder)]
    assert channels == [f for f in conv_filters for _ in range(resnet_blocks)]
    assert [b.filters for b in residual_blocks(decoder)] == channels[::-1]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_other_architectures_accept_and_ignore_resnet_blocks(architecture):
    data_shape = (8, 8, 1)
    tf_keras.utils.set_random_seed(0)
    a = networks.make_encoder(architecture, data_shape, 4, **SMALL)
    tf_keras.utils.set_random_seed(0)
    b = networks.make_encoder(architecture, data_shape, 4, **SMALL,
                              resnet_blocks=5)
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    decoder = networks.make_decoder(architecture, 2, data_shape, **SMALL,
                                    resnet_blocks=5)
    assert not residual_blocks(a) and not residual_blocks(decoder)


def test_resnet_every_variable_gets_a_gradient_and_trains():
    tf_keras.utils.set_random_seed(0)
    data_shape = (7, 7, 2)
    encoder = networks.make_encoder("resnet", data_shape, 3, **SMALL)
    decoder = networks.make_decoder("resnet", 3, data_shape, num_params=2,
                                    **SMALL)
    variables = encoder.trainable_variables + decoder.trainable_variables
    # Kernels and biases: encoder = stem + 2 x (stride-2 conv + 2 blocks of
    # 2 convs) + hidden + output; decoder = hidden + dense to the map + 2 x
    # (2 blocks + upsampling conv) + output conv.
    assert len(encoder.trainable_variables) == 2 * (1 + 2 * (1 + 2 * 2) + 2)
    assert len(decoder.trainable_variables) == 2 * (2 + 2 * (2 * 2 + 1) + 1)
    x = tf.random.uniform((4,) + data_shape, seed=3)

    def loss_fn():
        params = decoder(encoder(x))               # [4, 7, 7, 2, 2]
        return tf.reduce_mean((params[..., 0] - x) ** 2
                              + params[..., 1] ** 2)

    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
        assert g is not None, v.name
        assert np.any(g.numpy() != 0), v.name
    before = [v.numpy().copy() for v in variables]
    optimizer = tf_keras.optimizers.Adam(1e-2)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss_step = loss_fn()
        optimizer.apply_gradients(
            zip(tape.gradient(loss_step, variables), variables))
    for v, b in zip(variables, before):
        assert not np.allclose(v.numpy(), b), v.name
    assert loss_fn() < loss


def test_module_holding_the_networks_collects_every_variable():
    encoder = networks.make_encoder("resnet", (8, 8, 1), 4, **SMALL)
    decoder = networks.make_decoder("resnet", 2, (8, 8, 1), **SMALL)
    module = tf.Module()
    module.networks = [encoder, decoder]
    collected = {v.ref() for v in module.trainable_variables}
    weights = encoder.trainable_weights + decoder.trainable_weights
    assert collected == {w.ref() for w in weights}
    for block in residual_blocks(encoder) + residual_blocks(decoder):
        for w in block.conv1.weights + block.conv2.weights:
            assert w.ref() in collected, w.name


def test_residual_block_starts_close_to_the_identity():
    tf_keras.utils.set_random_seed(0)
    block = networks.ResidualBlock(16, "relu")
    x = tf.random.normal((4, 6, 6, 16), seed=4)
    y = block(x)
    branch = np.linalg.norm((y - x).numpy()) / np.linalg.norm(x.numpy())
    # conv2 starts at 0.1 x Glorot: the branch adds a few per cent of x.
    assert 0 < branch < 0.1
    kernel_std = np.std(block.conv2.kernel.numpy())
    glorot_std = np.sqrt(2 / (9 * 16 + 9 * 16))
    np.testing.assert_allclose(kernel_std, 0.1 * glorot_std, rtol=0.1)
    # The skip is the identity: with conv2 at zero, y == x exactly.
    zero = networks.ResidualBlock(16, "relu", residual_scale=0.0)
    np.testing.assert_array_equal(zero(x).numpy(), x.numpy())
    # y = x + conv2(act(conv1(act(x)))), pre-activation.
    expected = x + block.conv2(tf.nn.relu(block.conv1(tf.nn.relu(x))))
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)


def test_residual_block_config_round_trip_and_channel_check():
    block = networks.ResidualBlock(8, "elu", residual_scale=0.5, name="rb")
    clone = networks.ResidualBlock.from_config(block.get_config())
    assert (clone.filters, clone.activation, clone.residual_scale,
            clone.name) == (8, "elu", 0.5, "rb")
    with pytest.raises(ValueError, match=r"\[N, H, W, 8\]"):
        block(tf.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("architecture", networks.ARCHITECTURES)
def test_mixed_bfloat16_computes_in_bfloat16_outputs_float32(architecture):
    data_shape = (8, 8, 1)
    encoder = networks.make_encoder(architecture, data_shape, 4, **SMALL,
                                    dtype_policy="mixed_bfloat16")
    decoder = networks.make_decoder(architecture, 2, data_shape, **SMALL,
                                    num_params=2,
                                    dtype_policy="mixed_bfloat16")
    h = encoder(tf.random.uniform((2,) + data_shape, seed=5))
    params = decoder(tf.random.normal((2, 2), seed=6))
    assert h.dtype == tf.float32 and params.dtype == tf.float32
    assert params.shape == (2,) + data_shape + (2,)
    for network in (encoder, decoder):
        assert network.layers[-2].compute_dtype == "bfloat16"
        assert all(v.dtype == tf.float32 for v in network.trainable_variables)
        for block in residual_blocks(network):
            assert block.conv1.compute_dtype == "bfloat16"
            assert block.conv2.compute_dtype == "bfloat16"


@pytest.mark.parametrize("architecture", ["conv", "resnet"])
def test_image_architectures_refuse_vectors(architecture):
    message = (f"architecture='{architecture}' needs image data.*"
               f"architecture='mlp'")
    with pytest.raises(ValueError, match=message):
        networks.make_encoder(architecture, (10,), 4, **SMALL)
    with pytest.raises(ValueError, match=message):
        networks.make_decoder(architecture, 2, (10,), **SMALL)
    with pytest.raises(ValueError, match="at least one conv_filters"):
        networks.make_encoder(architecture, (8, 8, 1), 4, hidden_units=(8,),
                              conv_filters=())


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"'mlp', 'conv', 'resnet'"):
        networks.make_encoder("densenet", (8, 8, 1), 4, **SMALL)
    with pytest.raises(ValueError, match=r"'mlp', 'conv', 'resnet'"):
        networks.make_decoder("densenet", 2, (8, 8, 1), **SMALL)
    with pytest.raises(ValueError, match="leaky_relu"):
        networks.make_encoder("resnet", (8, 8, 1), 4, **SMALL,
                              activation="relu6")
    with pytest.raises(ValueError, match="resnet_blocks must be >= 0"):
        networks.make_decoder("resnet", 2, (8, 8, 1), **SMALL,
                              resnet_blocks=-1)


def test_resnet_vae_elbo_trains_every_variable():
    tf_keras.utils.set_random_seed(0)
    model = tfpvae.VAE(latent_dim=4, data_shape=(12, 12, 1),
                       architecture="resnet", conv_filters=(8, 16),
                       hidden_units=(32,))
    blocks = model.settings.resnet_blocks * 2
    assert len(residual_blocks(model.encoder)) == blocks
    assert len(residual_blocks(model.decoder)) == blocks
    rng = np.random.default_rng(0)
    x = (rng.random((6, 12, 12, 1)) < 0.3).astype(np.float32)
    variables = model.trainable_variables
    tracked = {v.ref() for v in variables}
    for w in model.encoder.trainable_weights + model.decoder.trainable_weights:
        assert w.ref() in tracked, w.name
    with tf.GradientTape() as tape:
        result = model.elbo(x, kl="analytic", seed=7)
        loss = -tf.reduce_mean(result.elbo)
    assert result.elbo.shape == (6,)
    assert np.all(np.isfinite(result.elbo.numpy()))
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
        assert g is not None, v.name
        assert np.any(g.numpy() != 0), v.name
