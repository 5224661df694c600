"""`python -m tfpvae.evaluate --disentanglement`: the metrics of
tfpvae.disentanglement on a model's posterior means, and their wiring.

Known answer: sprites can be decoded exactly. Every sprite is one of 420
distinct masks (shape x scale x orientation up to the shape's symmetry: the
square repeats every 10 orientation steps, the ellipse every 20) pasted at
its position, so the mask cut to its bounding box names shape, scale and
orientation, and the box's corner gives the position. A representation that
decodes the image returns its factors, the orientation reduced by the
shape's symmetry: the best code there is. Through `evaluate.run` it must
score near the maximum, which it only does if the codes of the split are
paired with that split's factors and the sampled scores get the sprites.
"""

import itertools
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import tfpvae
from tfpvae import disentanglement
from tfpvae import evaluate
from tfpvae import run_dir
from tfpvae import sprites
from tfpvae.config import TrainConfig

from test_evaluate import run_cli

#: 1,800 train and 200 valid examples (the default validation fraction).
SOURCE = "sprites:2000"
METRICS = ("mig", "sap", "dci_disentanglement", "dci_completeness",
           "dci_informativeness", "beta_vae", "factor_vae")
#: Orientation steps after which each shape (square, ellipse, heart) repeats.
SYMMETRY = np.array([10, 20, 40])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained VAE on sprites, saved as the trainer saves a run."""
    directory = str(tmp_path_factory.mktemp("disentanglement") / "run")
    model = tfpvae.VAE(latent_dim=5, data_shape=(64, 64, 1), hidden_units=(32,))
    run_dir.save_model_config(model, directory)
    run_dir.write_flags(directory, TrainConfig(
        dataset=SOURCE, latent_dim=5, hidden_units=(32,), seed=0))
    tf.train.CheckpointManager(run_dir.make_checkpoint(model),
                               run_dir.checkpoint_dir(directory), 1).save()
    return directory


def canonical(factors: np.ndarray) -> np.ndarray:
    """Factors with the orientation reduced by the shape's symmetry."""
    factors = np.array(factors)
    factors[:, 2] %= SYMMETRY[factors[:, 0]]
    return factors


def sprite_decoder():
    """`images [n, 64, 64, 1] -> canonical factors [n, 5]`, exactly."""
    masks, table = sprites._masks(), {}  # pylint: disable=protected-access
    for shape, scale, orientation in itertools.product(
            *map(range, sprites.FACTOR_SIZES[:3])):
        mask = masks[shape, scale, orientation]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        cut = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        # The first orientation of a symmetric mask is the canonical one.
        table.setdefault((cut.shape, cut.tobytes()),
                         (shape, scale, orientation, rows[0], cols[0]))
    assert len(table) == 6 * (10 + 20 + 40)  # Scales x orientations of each shape.

    def decode(images):
        codes = np.empty((len(images), 5))
        for i, image in enumerate(np.asarray(images)[..., 0] > 0.5):
            rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
            cut = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.uint8)
            shape, scale, orientation, top, left = table[(cut.shape, cut.tobytes())]
            # Mask row j lands on image row position_y + j (columns alike).
            codes[i] = shape, scale, orientation, cols[0] - left, rows[0] - top
        return codes
    return decode


# The classifiers see few examples of factors with up to 40 values.
@pytest.mark.filterwarnings("ignore:The number of unique classes is greater")
def test_untrained_vae_gets_every_metric_in_range(model_dir):
    results = run_cli(
        f"--model_dir={model_dir}", "--k=2", "--elbo_samples=1",
        "--max_examples=36", "--disentanglement",
        "--disentanglement_train_points=30", "--disentanglement_test_points=15",
        "--disentanglement_batch_size=4")
    with open(os.path.join(model_dir, "evaluation.json")) as f:
        assert json.load(f) == results
    assert results["split"] == "valid" and results["num_examples"] == 36
    scores = results["disentanglement"]
    for name in METRICS:
        assert 0.0 <= scores[name] <= 1.0, (name, scores[name])
    assert scores["factor_names"] == list(sprites.FACTOR_NAMES)
    assert np.shape(scores["dci_importance_matrix"]) == (5, 5)
    # 36 < 30 + 15 points: all are used, held out 1 : 2, and the output says so.
    assert scores["available_points"] == 36
    assert (scores["train_points"], scores["test_points"]) == (24, 12)
    assert (scores["sampled_train_points"], scores["sampled_test_points"],
            scores["batch_size"]) == (30, 15, 4)
    assert scores["note"] == ("the valid split has 36 points, fewer than 30 + 15: "
                              "MIG, SAP and DCI use all of them (12 held out for "
                              "testing)")
    table = evaluate.format_table(results)
    for name in METRICS:
        assert f"disentanglement.{name}" in table
    assert "the valid split has 36 points" in table


@pytest.mark.slow
def test_a_decoding_representation_scores_near_the_maximum(model_dir, monkeypatch):
    decode = sprite_decoder()
    # The representation replaces the VAE's posterior means; the rest of
    # the program (data, split, factors, sampler) is the real one.
    monkeypatch.setattr(evaluate, "posterior_means",
                        lambda model, batch_size: decode)
    results = run_cli(
        f"--model_dir={model_dir}", "--k=1", "--elbo_samples=1", "--split=train",
        "--max_examples=600", "--disentanglement", "--seed=3",
        "--disentanglement_train_points=300", "--disentanglement_test_points=150",
        "--disentanglement_batch_size=16")
    scores = results["disentanglement"]
    # 600 >= 300 + 150: disentanglement_lib's way, a draw of that many.
    assert (scores["available_points"], scores["train_points"],
            scores["test_points"], scores["note"]) == (600, 300, 150, None)

    # The decoder is exact on the split, and the best MIG on 300 points of
    # it (histogram bins, the plug-in estimate's bias on few points and the
    # symmetric orientations keep it below 1).
    ds = evaluate.load_run_dataset(model_dir)
    x, factors = ds.splits["train"][:600], ds.factors["train"][:600]
    np.testing.assert_array_equal(decode(x), canonical(factors))
    subset = np.random.default_rng(0).permutation(600)[:300]
    best_mig = disentanglement.mig(canonical(factors[subset]), factors[subset])
    assert best_mig > 0.5
    assert scores["mig"] == pytest.approx(best_mig, abs=0.06)
    assert scores["dci_disentanglement"] > 0.75
    assert scores["dci_completeness"] > 0.75
    # Orientation of a square or an ellipse is known only up to symmetry.
    informativeness = scores["dci_informativeness_per_factor"]
    assert min(np.delete(informativeness, 2)) > 0.9
    assert scores["beta_vae"] > 0.95 and scores["factor_vae"] > 0.8


def test_data_without_factors_is_refused_in_one_line(model_dir):
    with pytest.raises(ValueError) as info:
        run_cli(f"--model_dir={model_dir}", "--dataset=sklearn_digits",
                "--disentanglement")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--disentanglement needs data with factor labels, "
                              "and sklearn_digits has none")
    assert "--dataset=sprites" in message and "dsprites" in message
    assert "shapes3d" in message


def test_bad_sample_sizes_are_refused(model_dir):
    with pytest.raises(flags.IllegalFlagValueError):
        run_cli(f"--model_dir={model_dir}", "--disentanglement_batch_size=1")
    with pytest.raises(flags.IllegalFlagValueError):
        run_cli(f"--model_dir={model_dir}", "--disentanglement_test_points=0")
