"""Labels in the model: the conditional VAE and the semi-supervised M2.

A conditional linear-Gaussian model,

    y ~ uniform{0..K-1},  z ~ N(0, I),  x | z, y ~ N(W z + b_y, s^2 I),

has p(x|y) = N(b_y, W W^T + s^2 I) and p(x) = mean_y p(x|y) in closed form,
and a diagonal exact posterior q(z|x, y) when W's columns are orthogonal.
With that posterior every draw of ELBO(x|y) is log p(x|y), so M2's labelled
bound L(x, y) = ELBO(x|y) + log p(y) is log p(x, y), and its unlabelled
bound must equal sum_y q(y|x) log p(x, y) + H(q(y|x)) computed class by
class - below log p(x) unless q(y|x) = p(y|x).
"""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

import tfpvae
from tfpvae import data as data_lib
from tfpvae import inputs
from tfpvae import train
from tfpvae.models import SemiSupervisedVAE

K, LATENT, DIM, SIGMA = 3, 2, 4, 0.5


class Conditional:
    """The model's parameters and closed forms (numpy)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        self.c = np.array([1.5, 0.7])
        self.w = (q[:, :LATENT] * self.c).astype(np.float32)
        self.b = rng.normal(size=(DIM, K)).astype(np.float32) * 2
        self.s = 1.0 / (1.0 + self.c ** 2 / SIGMA ** 2)  # posterior variances
        cov = self.w @ self.w.T + SIGMA ** 2 * np.eye(DIM)
        self.p_x_given = [scipy.stats.multivariate_normal(self.b[:, y], cov)
                          for y in range(K)]
        y = rng.integers(K, size=12)
        z = rng.normal(size=(12, LATENT))
        self.x = (z @ self.w.T + self.b[:, y].T
                  + SIGMA * rng.normal(size=(12, DIM))).astype(np.float32)
        self.y = y

    def log_p_xy(self, x):
        """[K, N] log p(x, y) = log p(x|y) + log(1/K)."""
        return np.stack([d.logpdf(x) for d in self.p_x_given]) - np.log(K)

    def model(self):
        w, b = tf.constant(self.w), tf.constant(self.b)
        s = tf.constant(self.s, tf.float32)

        def encoder(inputs):
            x, one_hot = inputs
            b_y = tf.matmul(one_hot, b, transpose_b=True)
            loc = s * tf.matmul(x - b_y, w) / SIGMA ** 2
            raw = tf.math.log(tf.math.expm1(tf.sqrt(s) - 1e-5))
            return tf.concat([loc, tf.broadcast_to(raw, tf.shape(loc))], -1)

        def decoder(z_and_label):
            z, one_hot = z_and_label[:, :LATENT], z_and_label[:, LATENT:]
            return tf.reshape(tf.matmul(z, w, transpose_b=True)
                              + tf.matmul(one_hot, b, transpose_b=True),
                              [-1, DIM, 1])

        return SemiSupervisedVAE(
            num_classes=K, latent_dim=LATENT, data_shape=(DIM,),
            likelihood="gaussian", gaussian_scale=SIGMA, hidden_units=(8,),
            encoder=encoder, decoder=decoder)


@pytest.fixture(scope="module")
def cond():
    return Conditional()


def test_labelled_bound_is_log_p_x_y_with_the_exact_posterior(cond):
    model = cond.model()
    exact = cond.log_p_xy(cond.x)[cond.y, np.arange(len(cond.y))]
    bound = model.elbo(cond.x, kl="mc", n_samples=3, seed=1, labels=cond.y)
    np.testing.assert_allclose(bound.elbo.numpy(), exact, atol=2e-3)
    np.testing.assert_allclose(
        model.log_likelihood(cond.x, k=20, seed=2, labels=cond.y), exact,
        atol=2e-3)


def test_unlabelled_bound_is_the_sum_over_classes(cond):
    model = cond.model()
    log_p_xy = cond.log_p_xy(cond.x)                       # [K, N]
    q = model.classify(cond.x).probs_parameter().numpy().T  # [K, N]
    entropy = -np.sum(q * np.log(q), axis=0)
    brute = np.sum(q * log_p_xy, axis=0) + entropy
    log_px = scipy.special.logsumexp(log_p_xy, axis=0)
    # With the Monte Carlo rate every draw is exact, and so is the sum.
    bound = model.elbo(cond.x, kl="mc", seed=3).elbo.numpy()
    np.testing.assert_allclose(bound, brute, atol=2e-3)
    # With the closed-form rate the distortion is a mean of draws.
    bound = model.elbo(cond.x, kl="analytic", n_samples=400, seed=3).elbo
    np.testing.assert_allclose(bound.numpy(), brute, atol=0.25)
    assert np.all(brute <= log_px + 1e-9)
    np.testing.assert_allclose(model.log_likelihood(cond.x, k=20, seed=4),
                               log_px, atol=2e-3)
    # With q(y|x) = p(y|x) the unlabelled bound is log p(x).
    posterior = np.exp(log_p_xy - log_px)
    exact_entropy = -np.sum(posterior * np.log(posterior), axis=0)
    np.testing.assert_allclose(
        np.sum(posterior * log_p_xy, axis=0) + exact_entropy, log_px)


def test_training_terms_mix_the_two_bounds_and_the_classifier(cond):
    model = cond.model()
    labelled = np.array([0] * 8 + [1] * 4)
    batch = {"x": tf.constant(cond.x), "labels": tf.constant(cond.y),
             "labelled": tf.constant(labelled)}
    terms = model.training_terms(batch, kl="mc", n_samples=1, beta=1.0,
                                 seed=tf.constant([0, 5]))
    unl = model.elbo(cond.x[:8], kl="mc", seed=[0, 5]).objective.numpy()
    lab = model.elbo(cond.x[8:], kl="mc", seed=[0, 5], labels=cond.y[8:])
    log_q = model.classify(cond.x[8:]).log_prob(cond.y[8:]).numpy()
    total = -tf.reduce_sum(terms.objective).numpy() / 8
    # Exact bounds: the draws do not matter.
    expected = -(unl.mean() + np.mean(lab.objective.numpy()
                                      + model.alpha * log_q))
    assert total == pytest.approx(expected, abs=2e-3)
    assert tf.reduce_sum(terms.extras["classification_loss"]).numpy() / 8 \
        == pytest.approx(-log_q.mean(), rel=1e-4)


def test_conditional_vae_samples_the_classes_it_is_given():
    model = tfpvae.VAE(latent_dim=2, data_shape=(6,), hidden_units=(8,),
                       likelihood="gaussian", num_classes=4)
    assert model.sample(5, seed=0, labels=3).shape == (5, 6)
    with pytest.raises(ValueError, match="pass labels"):
        model.sample(5, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        model.elbo(np.zeros((2, 6), np.float32), labels=[1, 4])
    with pytest.raises(ValueError, match="not conditional"):
        tfpvae.VAE(latent_dim=2, data_shape=(6,), hidden_units=(8,)).encode(
            np.zeros((1, 6), np.float32), labels=[0])


def test_labelled_subset_is_balanced_seeded_and_checked(tiny_config):
    config = tiny_config(semi_supervised=True, labelled_examples=25,
                         labelled_batch_size=5)
    dataset = inputs.load_data(config)
    classes = inputs.num_classes(config, dataset)
    subset = inputs.labelled_subset(config, dataset, classes)
    labels = dataset.labels["train"][list(subset.indices)]
    counts = np.bincount(labels, minlength=classes)
    assert classes == 10 and counts.sum() == 25
    assert counts.max() - counts.min() <= 1
    assert subset == inputs.labelled_subset(config, dataset, classes)
    other = inputs.labelled_subset(config.replace(seed=1), dataset, classes)
    assert other.indices != subset.indices
    with pytest.raises(data_lib.DatasetError, match="more than the"):
        inputs.labelled_subset(config.replace(labelled_examples=10 ** 6),
                               dataset, classes)


def test_conditional_on_unlabelled_data_names_the_fix(tiny_config, tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, train=np.random.default_rng(0).random((50, 6)))
    config = tiny_config(dataset=str(path), conditional=True)
    with pytest.raises(data_lib.DatasetError, match="needs labels.*drop --conditional"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_label_column_of_non_integers_is_refused(tiny_config, tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b,target\n" + "".join(
        f"{i},{i % 3},{0.5 + i % 2}\n" for i in range(40)))
    config = tiny_config(dataset=str(path), label_column="target",
                         conditional=True, likelihood="gaussian")
    with pytest.raises(data_lib.DatasetError, match="non-integer"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_conditional_and_semi_supervised_train_and_evaluate(tiny_config,
                                                            tmp_path):
    conditional = train.train_and_evaluate(
        tiny_config(conditional=True, max_steps=6),
        str(tmp_path / "conditional"))
    model = tfpvae.load(str(tmp_path / "conditional"))
    assert model.num_classes == 10 and np.isfinite(conditional["eval_iwae"])
    model_dir = str(tmp_path / "m2")
    metrics = train.train_and_evaluate(
        tiny_config(semi_supervised=True, labelled_examples=20,
                    labelled_batch_size=10, max_steps=6), model_dir)
    assert 0 <= metrics["eval_classification_error"] <= 1
    assert np.isfinite(metrics["eval_iwae"]) and np.isfinite(metrics["eval_elbo"])
    history = tfpvae.run_dir.read_history(model_dir)
    assert history[-1]["train_classification_loss"] > 0
    recorded = tfpvae.run_dir.read_json(
        tfpvae.run_dir.path(model_dir, tfpvae.run_dir.LABELLED_FILE))
    assert len(recorded["indices"]) == 20
    loaded = tfpvae.load(model_dir)
    assert isinstance(loaded, SemiSupervisedVAE)
    assert loaded.sample(4, seed=0).shape == (4, 8, 8, 1)
