"""Labels composed with the rest of the package (issue #15).

A conditional model must work with every architecture, likelihood, prior,
flow and hierarchy: every variable trains, the labels reach the encoder and
the decoder (of the right example), and the bounds on log p(x|y) are
ordered. With a 2-D latent space log p(x|y) = log int p(z) p(x|z, y) dz is
a sum over a fine grid of z, which `log_likelihood(x, labels=y)` must
match, and M2's log p(x) must be log sum_y p(y) p(x|y). The SavedModel
signatures take the labels and give the Python model's numbers; get_config
and `tfpvae.load` carry the condition; the class-samples grid, the
analogies and the confusion matrix have the layout they claim, and
`python -m tfpvae.plot` draws them only for the models they are for.
"""

import json
import os

import numpy as np
import pytest
import scipy.special
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import flags
from matplotlib import image as mpimg

import tfpvae
from tfpvae import export
from tfpvae import figures
from tfpvae import models
from tfpvae import plot
from tfpvae import run_dir
from tfpvae.config import TrainConfig
from tfpvae.models import HierarchicalVAE
from tfpvae.models import SemiSupervisedVAE

tfd = tfp.distributions

K = 3
IMAGE = (8, 8, 1)
#: Small networks: one 8-unit layer everywhere, 4-filter convolutions, a
#: one-layer flow with context, three mixture components.
SMALL = dict(hidden_units=(8,), latent_hidden_units=(8,), conv_filters=(4,),
             resnet_blocks=1, flow_hidden_units=(8,), flow_layers=1,
             flow_context_units=2, mixture_components=3)


def build(cls=tfpvae.VAE, **kwargs):
    """A small model on 8x8 images (seeded weights); a flow's gates are
    opened, so that its networks are not the identity's zero gradient."""
    tf_keras.utils.set_random_seed(0)
    model = cls(**{"latent_dim": 2, "data_shape": IMAGE, **SMALL, **kwargs})
    flow = getattr(getattr(model, "vae", model), "flow", None)
    for gate in getattr(flow, "gates", []):
        gate.assign([0.7, -0.4])
    return model


def images(n, seed=0):
    return (np.random.default_rng(seed).random((n,) + IMAGE) < 0.4).astype(
        np.float32)


X = images(8)
Y = np.arange(8, dtype=np.int32) % K
OTHER = (Y + 1) % K


def differ(a, b, by=1e-4):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) > by


def one_by_one(fn, n=8):
    """fn(i) of one example each, stacked: what a batch must give row by
    row (each example with its own label)."""
    return np.concatenate([np.asarray(fn(i)) for i in range(n)])


# --------------------------------------------------------------------------
# (1), (2) Every architecture, likelihood, prior, flow and hierarchy.

COMPOSE = {
    "conv": dict(architecture="conv"),
    "resnet": dict(architecture="resnet"),
    "gaussian": dict(likelihood="gaussian"),
    "continuous_bernoulli": dict(likelihood="continuous_bernoulli"),
    "mixture": dict(prior="mixture"),
    "iaf": dict(posterior_flow="iaf"),
    "ladder_conv": dict(latent_dim=(3, 2), hierarchy="ladder",
                        architecture="conv"),
    "bottom_up_mixture": dict(latent_dim=(3, 2), hierarchy="bottom_up",
                              prior="mixture"),
    "tomczak_iaf_gaussian": dict(latent_dim=(3, 2), hierarchy="tomczak",
                                 posterior_flow="iaf", likelihood="gaussian"),
}


@pytest.mark.parametrize("name", COMPOSE)
def test_conditional_model_trains_and_reads_the_labels(name):
    model = build(num_classes=K, **COMPOSE[name])
    layers = len(model.latent_sizes)
    assert isinstance(model, HierarchicalVAE) == (layers > 1)
    assert model.num_classes == K

    # Every trainable variable gets a nonzero gradient.
    with tf.GradientTape() as tape:
        loss, _ = model.loss(X, kl="mc", seed=0, labels=Y)
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.name for v, g in zip(model.trainable_variables, grads)
            if g is None or not np.any(g.numpy())]
    assert not dead, dead

    # The labels reach the encoder (every layer's posterior), each example
    # its own label.
    means = model.layer_means(X, Y)
    assert len(means) == layers
    for mean, other in zip(means, model.layer_means(X, OTHER)):
        assert differ(mean, other)
    top = model.posterior_mean(X, Y).numpy()
    assert differ(top, model.posterior_mean(X, OTHER))
    np.testing.assert_allclose(
        one_by_one(lambda i: model.posterior_mean(X[i:i + 1], Y[i:i + 1])),
        top, rtol=1e-5, atol=1e-6)

    # The labels reach the decoder, each row its own.
    z = tf.random.stateless_normal([8, model.latent_dim], seed=[0, 1])
    decoded = model.decode_top(z, Y).mean().numpy()
    assert decoded.shape == (8,) + IMAGE
    assert differ(decoded, model.decode_top(z, OTHER).mean())
    np.testing.assert_allclose(
        one_by_one(lambda i: model.decode_top(z[i:i + 1], Y[i:i + 1]).mean()),
        decoded, rtol=1e-5, atol=1e-6)
    full = model.prior.sample(8, seed=tf.constant([0, 2]))
    assert differ(model.decode(full, Y).mean(), model.decode(full, OTHER).mean())
    # The same z ~ p(z) (same seed), drawn as two classes.
    samples = [model.sample(4, seed=3, mean=True, labels=c) for c in (0, 1)]
    assert samples[0].shape == (4,) + IMAGE and differ(*samples)

    # Bounds on log p(x|y), finite and ordered in expectation: the ELBO's
    # mean over 64 draws <= IWAE_64, averaged over 4 estimates per example
    # (their standard error is below 0.08 nats, the gap above 0.15 here;
    # log_likelihood is checked against brute force below).
    elbo = model.elbo(X, kl="mc", n_samples=64, seed=1, labels=Y).elbo.numpy()
    iwae = model.iwae(np.tile(X, (4, 1, 1, 1)), k=64, seed=2,
                      labels=np.tile(Y, 4)).elbo.numpy()
    assert np.all(np.isfinite(elbo)) and np.all(np.isfinite(iwae))
    assert elbo.mean() <= iwae.mean() + 0.05, (elbo, iwae)
    with pytest.raises(ValueError, match="pass labels"):
        model.elbo(X, kl="mc")


@pytest.mark.parametrize("make", [
    lambda: tfpvae.VAE(latent_dim=2, data_shape=(6,), num_classes=K,
                       prior="vamp", **SMALL),
    lambda: tfpvae.VAE(latent_dim=(3, 2), data_shape=(6,), num_classes=K,
                       prior="vamp", **SMALL),
    lambda: SemiSupervisedVAE(num_classes=K, latent_dim=2, data_shape=(6,),
                              prior="vamp", **SMALL),
    lambda: TrainConfig(conditional=True, prior="vamp"),
    lambda: TrainConfig(semi_supervised=True, prior="vamp"),
], ids=["vae", "hierarchical", "m2", "config_conditional",
        "config_semi_supervised"])
def test_vamp_prior_with_labels_is_refused_in_one_line_naming_the_fix(make):
    with pytest.raises(ValueError) as error:
        make()
    message = str(error.value)
    assert "\n" not in message
    assert "VampPrior" in message and "--prior=normal or mixture" in message
    # Without labels the VampPrior is fine.
    assert tfpvae.VAE(latent_dim=2, data_shape=(6,), prior="vamp",
                      **SMALL).num_classes == 0


@pytest.mark.parametrize("make", [
    lambda: tfpvae.VAE(latent_dim=2, data_shape=(6,), num_classes=K, **SMALL),
    lambda: tfpvae.VAE(latent_dim=(3, 2), data_shape=(6,), num_classes=K,
                       **SMALL),
    lambda: SemiSupervisedVAE(num_classes=K, latent_dim=2, data_shape=(6,),
                              **SMALL),
], ids=["vae", "hierarchical", "m2"])
def test_decode_checks_its_labels_as_encode_does(make):
    model = make()
    z = model.prior.sample(2, seed=tf.constant([0, 1]))
    # Not a TensorFlow error about None, and no silent all-zero one-hot.
    with pytest.raises(ValueError, match="pass labels"):
        model.decode(z)
    with pytest.raises(ValueError, match=r"in \[0, 3\); got values in \[0, 3\]"):
        model.decode(z, [0, 3])
    with pytest.raises(ValueError, match="must be integers"):
        model.decode(z, [0.0, 1.0])
    assert model.decode(z, [0, 2]).mean().shape == (2, 6)
    with pytest.raises(ValueError, match="not conditional"):
        tfpvae.VAE(latent_dim=2, data_shape=(6,), **SMALL).decode(
            tf.zeros([2, 2]), [0, 1])


# --------------------------------------------------------------------------
# log p(x|y) by brute force: a 2-D latent space, summed over a grid of z.

GRID = np.linspace(-7.0, 7.0, 281, dtype=np.float32)


def brute_force_log_p(model, x, labels):
    """[N] log p(x|y) = log sum over the grid of p(z) p(x|z, y) dz, one
    example (and its label) at a time."""
    step = float(GRID[1] - GRID[0])
    z = np.stack(np.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2)
    log_pz = model.prior.log_prob(z).numpy()
    # The grid holds the prior's mass.
    assert abs(scipy.special.logsumexp(log_pz) + 2 * np.log(step)) < 1e-3
    log_px_z = np.concatenate([  # [G, N]
        model.decode(z[:, None], labels[i:i + 1]).log_prob(x[i:i + 1]).numpy()
        for i in range(len(x))], axis=1)
    return (scipy.special.logsumexp(log_pz[:, None] + log_px_z, axis=0)
            + 2 * np.log(step))


def prepare_for_importance_sampling(vae):
    """Sets q(z|x, y) to N(0, 1.5^2) (before a flow), a proposal wider than
    the prior, so that k = 5000 draws estimate log p(x|y) to a few
    hundredths of a nat (the estimate is of p(x|y) whatever q is; a random
    encoder's std of 0.7 gives weights of infinite variance), and makes the
    label weigh more in the decoder."""
    dense = [layer for layer in vae.encoder.head.layers
             if hasattr(layer, "kernel")][-1]
    d = vae.latent_dim
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
    kernel[:, :2 * d] = 0.0
    bias[:d], bias[d:2 * d] = 0.0, np.log(np.expm1(1.5))
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    first = vae.decoder.layers[0]
    kernel = first.kernel.numpy()
    kernel[d:] *= 4.0  # The rows of the one-hot label.
    first.kernel.assign(kernel)


def tabular(likelihood, n=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    if likelihood == "gaussian":
        return rng.normal(size=(n, dim)).astype(np.float32)
    if likelihood == "continuous_bernoulli":
        return rng.random((n, dim)).astype(np.float32)
    return (rng.random((n, dim)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(likelihood="gaussian"), dict(prior="mixture"),
    dict(posterior_flow="iaf")], ids=["normal", "gaussian", "mixture", "iaf"])
def test_log_likelihood_with_labels_is_log_p_x_given_y(kwargs):
    model = build(num_classes=K, data_shape=(6,), **kwargs)
    prepare_for_importance_sampling(model)
    x, y = tabular(model.settings.likelihood), Y[:4]
    exact = brute_force_log_p(model, x, y)
    # The check can fail: the classes give log p(x|y) apart.
    assert differ(exact, brute_force_log_p(model, x, (y + 1) % K), by=0.5)
    estimate = model.log_likelihood(x, k=5000, seed=0, labels=y).numpy()
    np.testing.assert_allclose(estimate, exact, atol=0.1)


def test_m2_log_likelihood_sums_the_classes():
    model = build(SemiSupervisedVAE, num_classes=K, data_shape=(6,))
    prepare_for_importance_sampling(model.vae)
    x, y = tabular("bernoulli"), Y[:4]
    log_py = -np.log(K)
    per_class = np.stack([brute_force_log_p(model, x, np.full(4, c))
                          for c in range(K)])  # [K, N] log p(x|y)
    assert differ(per_class[0], per_class[1], by=0.5)
    exact = scipy.special.logsumexp(per_class + log_py, axis=0)
    estimate = model.log_likelihood(x, k=5000, seed=0).numpy()
    np.testing.assert_allclose(estimate, exact, atol=0.1)
    # Class by class through the conditional VAE inside.
    by_class = np.stack([
        model.vae.log_likelihood(x, k=5000, seed=c + 1,
                                 labels=np.full(4, c)).numpy()
        for c in range(K)])
    np.testing.assert_allclose(by_class, per_class, atol=0.1)
    np.testing.assert_allclose(
        scipy.special.logsumexp(by_class + log_py, axis=0), estimate, atol=0.1)
    # With labels: log p(x, y) = log p(x|y) + log p(y), the same draws.
    np.testing.assert_allclose(
        model.log_likelihood(x, k=200, seed=7, labels=y),
        model.vae.log_likelihood(x, k=200, seed=7, labels=y) + log_py,
        rtol=1e-6)
    # The unlabelled bound is below log p(x).
    bound = model.elbo(x, kl="analytic", n_samples=64, seed=8).elbo.numpy()
    assert np.all(bound <= exact + 0.05), (bound, exact)


# --------------------------------------------------------------------------
# Trained-looking labelled models, their run directories and data.

LABELLED = {
    "conditional": lambda: build(num_classes=K, posterior_flow="iaf"),
    "m2": lambda: build(SemiSupervisedVAE, num_classes=K),
    "hierarchical": lambda: build(num_classes=K, latent_dim=(3, 2),
                                  hierarchy="tomczak"),
}


@pytest.fixture(scope="module")
def labelled():
    return {name: make() for name, make in LABELLED.items()}


def encoder_view(model, x, labels):
    """(loc, scale) the encode signature shows: q0(z|x, y) of one Gaussian
    layer (before a flow), else the top layer's posterior mean and None."""
    vae = getattr(model, "vae", model)
    if len(model.latent_sizes) > 1:
        return model.posterior_mean(x, labels).numpy(), None
    q = vae.encode(x, labels)
    base = q if vae.flow is None else q.distribution
    return base.mean().numpy(), base.stddev().numpy()


# --------------------------------------------------------------------------
# (3) The SavedModel export.

@pytest.mark.parametrize("name", LABELLED)
def test_saved_model_signatures_take_labels_and_match_python(name, labelled,
                                                             tmp_path):
    model = labelled[name]
    loaded = tf.saved_model.load(export.export_saved_model(
        model, str(tmp_path / "saved_model")))
    signatures = {s: loaded.signatures[s] for s in ("encode", "decode", "sample")}
    for signature in signatures.values():
        _, inputs = signature.structured_input_signature
        assert inputs["labels"].dtype == tf.int32
        assert inputs["labels"].shape.as_list() == [None]
    x, y = tf.constant(X), tf.constant(Y)

    codes = signatures["encode"](x=x, labels=y)
    loc, scale = encoder_view(model, X, Y)
    np.testing.assert_allclose(codes["loc"], loc, rtol=1e-5, atol=1e-6)
    assert differ(codes["loc"], signatures["encode"](x=x, labels=OTHER)["loc"])
    if scale is not None:
        np.testing.assert_allclose(codes["scale"], scale, rtol=1e-5, atol=1e-6)
    assert codes["sample"].shape == (8, model.latent_dim)

    z = tf.random.stateless_normal([8, model.latent_dim], seed=[0, 4])
    decoded = signatures["decode"](z=z, labels=y)
    np.testing.assert_allclose(decoded["mean"], model.decode_top(z, Y).mean(),
                               rtol=1e-5, atol=1e-6)
    assert differ(decoded["mean"],
                  signatures["decode"](z=z, labels=OTHER)["mean"])
    if scale is not None:  # One Gaussian layer: the decoder's raw output.
        vae = getattr(model, "vae", model)
        probs = vae.likelihood(decoded["params"]).mean()
        np.testing.assert_allclose(probs, decoded["mean"], rtol=1e-5, atol=1e-6)

    labels = tf.constant([2, 0, 1, 2, 2], tf.int32)
    drawn = signatures["sample"](n=tf.constant(5), labels=labels)
    assert drawn["images"].shape == drawn["samples"].shape == (5,) + IMAGE
    assert drawn["z"].shape == (5, model.latent_dim)
    assert set(np.unique(drawn["samples"])) <= {0.0, 1.0}
    if scale is not None:  # The images are E[x|z, y] of the z returned.
        np.testing.assert_allclose(
            drawn["images"], model.decode(drawn["z"], labels).mean(),
            rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(drawn["labels"], labels)

    # A label out of range fails the call, naming the range (M2 reads -1
    # as a label not given where its Python method takes labels=None).
    lowest = -1 if name == "m2" else 0
    for bad in (lowest - 1, K):
        wrong = tf.constant([0, bad], tf.int32)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"labels must lie in \[{lowest}, {K}\)"):
            signatures["sample"](n=tf.constant(2), labels=wrong)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"labels must lie in \[{lowest}, {K}\)"):
            signatures["encode"](x=x[:2], labels=wrong)
    for bad in (-1, K):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"labels must lie in \[0, {K}\)"):
            signatures["decode"](z=z[:2], labels=tf.constant([0, bad]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per"):
        signatures["sample"](n=tf.constant(3), labels=tf.constant([0, 1]))


def test_m2_saved_model_reads_minus_one_as_a_label_not_given(labelled,
                                                             tmp_path):
    """M2's signatures read -1 as its Python methods read labels=None:
    encode takes the classifier's guess, sample draws y ~ p(y) (uniform)."""
    model = labelled["m2"]
    loaded = tf.saved_model.load(export.export_saved_model(
        model, str(tmp_path / "saved_model")))
    classify = loaded.signatures["classify"](x=tf.constant(X))
    q = model.classify(X)
    np.testing.assert_allclose(classify["probs"], q.probs_parameter(),
                               rtol=1e-5, atol=1e-7)
    guess = np.argmax(q.probs_parameter().numpy(), axis=-1)
    np.testing.assert_array_equal(classify["labels"], guess)

    # Half the labels given (and different from the guess), half not.
    given = np.where(np.arange(8) % 2 == 0, (guess + 1) % K, -1).astype(np.int32)
    used = np.where(given < 0, guess, given)
    codes = loaded.signatures["encode"](x=tf.constant(X),
                                        labels=tf.constant(given))
    np.testing.assert_allclose(codes["loc"], model.posterior_mean(X, used),
                               rtol=1e-5, atol=1e-6)
    assert differ(codes["loc"], model.posterior_mean(X, guess))

    n = 3000
    drawn = loaded.signatures["sample"](n=tf.constant(n),
                                        labels=tf.fill([n], -1))
    counts = np.bincount(drawn["labels"].numpy(), minlength=K)
    assert counts.sum() == n and len(counts) == K
    # Uniform p(y): each count within 5 standard deviations of n / K.
    sd = np.sqrt(n * (1 / K) * (1 - 1 / K))
    assert np.all(np.abs(counts - n / K) < 5 * sd), counts
    np.testing.assert_allclose(
        drawn["images"][:50], model.decode(drawn["z"][:50],
                                           drawn["labels"][:50]).mean(),
        rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# (5) get_config / from_config and tfpvae.load.

def save_run(model, directory, dataset_path):
    """Writes a model directory as the trainer would (model config,
    checkpoint, data flags, a history)."""
    os.makedirs(directory, exist_ok=True)
    run_dir.save_model_config(model, directory)
    tf.train.CheckpointManager(run_dir.make_checkpoint(model),
                               run_dir.checkpoint_dir(directory), 1).save()
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump({"dataset": str(dataset_path), "binarize": "none",
                   "likelihood": model.get_config()["likelihood"],
                   "seed": 0}, f)
    with open(os.path.join(directory, figures.HISTORY_FILE), "w") as f:
        f.write(json.dumps(dict(step=10, epoch=1.0, train_elbo=-40.0,
                                eval_elbo=-41.0, eval_iwae=-40.5)) + "\n")
    return directory


@pytest.fixture(scope="module")
def runs(labelled, tmp_path_factory):
    """Run directories of the labelled models and of an unconditional one,
    beside an .npz of 8x8 binary images with labels 0..K-1."""
    root = tmp_path_factory.mktemp("runs")
    arrays = {}
    for i, (split, n) in enumerate((("train", 24), ("valid", 12))):
        arrays[split] = images(n, seed=10 + i)[..., 0].astype(np.uint8)
        arrays[f"{split}_labels"] = np.arange(n) % K
    np.savez(root / "images.npz", **arrays)
    all_models = {**labelled, "unconditional": build()}
    return {name: save_run(model, str(root / name), root / "images.npz")
            for name, model in all_models.items()}


def outputs(model):
    """What a model computes, at fixed seeds."""
    z = tf.random.stateless_normal([8, model.latent_dim], seed=[0, 5])
    out = {"posterior_mean": model.posterior_mean(X, Y),
           "decode_top": model.decode_top(z, Y).mean(),
           "elbo": model.elbo(X, kl="mc", seed=6, labels=Y).elbo,
           "sample": model.sample(4, seed=8, labels=[0, 1, 2, 0])}
    if isinstance(model, SemiSupervisedVAE):  # (M2 has no IWAE bound.)
        out.update(classify=model.classify(X).logits,
                   unlabelled_elbo=model.elbo(X, kl="analytic", seed=6).elbo,
                   log_p_x=model.log_likelihood(X, k=4, seed=7))
    else:
        out["iwae"] = model.iwae(X, k=4, seed=7, labels=Y).elbo
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("name", LABELLED)
def test_config_and_load_round_trips_keep_the_condition(name, labelled, runs):
    model = labelled[name]
    config = model.get_config()
    assert config["num_classes"] == K
    rebuilt = models.from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(model)
    assert rebuilt.num_classes == K and rebuilt.get_config() == config
    assert [v.shape for v in rebuilt.trainable_variables] == [
        v.shape for v in model.trainable_variables]

    loaded = tfpvae.load(runs[name])
    assert type(loaded) is type(model) and loaded.get_config() == config
    expected, got = outputs(model), outputs(loaded)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    # The checkpoint carried the weights: a fresh model computes otherwise.
    z = tf.random.stateless_normal([8, model.latent_dim], seed=[0, 5])
    assert differ(rebuilt.decode_top(z, Y).mean(), expected["decode_top"])


# --------------------------------------------------------------------------
# (4) The figures.

def tiled(canvas, rows, cols, size=8):
    """[rows, cols, size, size] cells of a canvas tiled 1 pixel apart."""
    assert canvas.shape == (rows * (size + 1) - 1, cols * (size + 1) - 1)
    return np.stack([np.stack([
        canvas[r * (size + 1):r * (size + 1) + size,
               c * (size + 1):c * (size + 1) + size] for c in range(cols)])
        for r in range(rows)])


def tick_labels(ax, axis):
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


@pytest.mark.parametrize("name", LABELLED)
def test_class_samples_have_one_row_per_class(name, labelled):
    model, n = labelled[name], 4
    ax = figures.class_samples_figure(model, n=n, seed=2).axes[0]
    cells = tiled(np.asarray(ax.images[0].get_array()), K, n)
    assert tick_labels(ax, "y") == [str(c) for c in range(K)]
    z = model.prior.sample(n, seed=tf.constant([0, 2]))
    for c in range(K):  # Row c: the same z, decoded as class c.
        expected = model.decode(z, np.full(n, c)).mean().numpy()[..., 0]
        np.testing.assert_allclose(cells[c], np.clip(expected, 0, 1),
                                   atol=1e-5)
    assert differ(cells[0], cells[1])


@pytest.mark.parametrize("name", LABELLED)
def test_analogies_decode_each_input_as_every_class(name, labelled):
    model, n = labelled[name], 3
    ax = figures.analogies_figure(model, X[:n], Y[:n]).axes[0]
    cells = tiled(np.asarray(ax.images[0].get_array()), n, K + 1)
    assert tick_labels(ax, "x") == ["input"] + [str(c) for c in range(K)]
    np.testing.assert_array_equal(cells[:, 0], X[:n, ..., 0])
    # The style of each input's own class, for M2 too (its classifier's
    # guess is another class for some of them: the figure must not use it).
    z = model.posterior_mean(X[:n], Y[:n])
    if not model.conditions_on_labels:
        guesses = np.argmax(model.classify(X[:n]).logits.numpy(), -1)
        assert np.any(guesses != Y[:n])
    for c in range(K):
        expected = model.decode_top(z, np.full(n, c)).mean().numpy()[..., 0]
        np.testing.assert_allclose(cells[:, c + 1], np.clip(expected, 0, 1),
                                   atol=1e-5)
    assert differ(cells[:, 1], cells[:, 2])


class _ShiftedClassifier:
    """A stand-in for M2 whose q(y|x) always says (true class + 1) % K."""

    num_classes = K

    def __init__(self, labels):
        self.labels = labels

    def classify(self, x):
        guess = (self.labels[:len(x)] + 1) % K
        return tfd.Categorical(logits=10.0 * tf.one_hot(guess, K))


def test_confusion_matrix_rows_are_true_classes(labelled):
    labels = np.array([0, 0, 0, 1, 2, 2], np.int32)
    fig = figures.confusion_matrix_figure(_ShiftedClassifier(labels),
                                          images(6), labels)
    ax = fig.axes[0]
    counts = np.asarray(ax.images[0].get_array())
    expected = np.zeros((K, K))
    expected[[0, 1, 2], [1, 2, 0]] = [3, 1, 2]
    np.testing.assert_array_equal(counts, expected)
    assert "error 100.0%" in ax.get_title()
    assert "true" in ax.get_ylabel() and "predicted" in ax.get_xlabel()
    # M2's own classifier: its argmax counted per true class.
    model = labelled["m2"]
    counts = np.asarray(figures.confusion_matrix_figure(
        model, X, Y).axes[0].images[0].get_array())
    guess = np.argmax(model.classify(X).logits.numpy(), -1)
    expected = np.zeros((K, K))
    np.add.at(expected, (Y, guess), 1)
    np.testing.assert_array_equal(counts, expected)


FIGURES = ("class_samples", "analogies", "confusion_matrix")
#: The figures the plot program draws for each run, and their sizes in
#: inches (class_samples: one row per class; analogies: the 10 examples
#: shown, one column per class and one for the input).
DRAWN = {"conditional": ("class_samples", "analogies"),
         "hierarchical": ("class_samples", "analogies"),
         "m2": FIGURES, "unconditional": ()}
SIZES = {"class_samples": (9.5, 0.8 * K + 1.2),
         "analogies": (0.8 * (K + 1) + 1.5, 0.8 * 10 + 1.2),
         "confusion_matrix": (0.5 * K + 3, 0.5 * K + 2.5)}
SKIPS = {"class_samples": "the model has no labels",
         "analogies": "the model has no labels",
         "confusion_matrix": "the model has no classifier"}


@pytest.mark.parametrize("name", DRAWN)
def test_plot_program_draws_the_label_figures_only_where_they_apply(
        name, runs, monkeypatch):
    messages = []
    monkeypatch.setattr(figures.logging, "info",
                        lambda msg, *args: messages.append(msg % args))
    flag_values = flags.FlagValues()
    plot.define_flags(flag_values)
    flag_values(["plot", f"--model_dir={runs[name]}",
                 f"--which={','.join(FIGURES)}"])
    paths = plot.run(flag_values)
    drawn = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
    assert set(drawn) == set(DRAWN[name])
    for figure, path in drawn.items():
        assert os.path.dirname(path) == os.path.join(runs[name], "plots")
        pixels = mpimg.imread(path)[..., :3]
        width, height = SIZES[figure]
        assert pixels.shape[:2] == (round(height * figures.DPI),
                                    round(width * figures.DPI)), figure
        assert pixels.std() > 0.05, figure
    skipped = {f"Skipping the {figure} plot: {SKIPS[figure]}."
               for figure in FIGURES if figure not in DRAWN[name]}
    assert skipped <= set(messages), messages
    assert not [m for m in messages if m.startswith("Skipping")
                and m not in skipped]
