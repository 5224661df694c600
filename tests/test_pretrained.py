"""The trained models that ship in pretrained/ (tfpvae.pretrained).

Each shipped model is loaded offline, by name and by path, and its bound
on a slice of the held-out split is compared with the figures its document
reports, within what the slice's standard error allows: for n examples and
k importance samples, E[-IWAE_k] lies between the reported NLL (k = 5000,
itself an upper bound of -log p(x)) and the reported -ELBO (IWAE_k >= ELBO
for every k >= 1), so the slice's mean -IWAE_k must lie in
[NLL - 4 se, -ELBO + 4 se]. A model with other weights than the run's
(a wrong checkpoint, a variable restored to its initial value) is tens of
nats away.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import tfpvae
from tfpvae import evaluate, pretrained, run_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED = pretrained.names()
SLICE, K = 200, 20


def test_models_ship_and_each_is_under_the_size_limit():
    assert Path(pretrained.directory()) == REPO / "pretrained"
    assert "conditional_mnist" in SHIPPED
    for name in SHIPPED:
        folder = Path(pretrained.path(name))
        prefix = run_dir.find_checkpoint(str(folder / run_dir.CHECKPOINT_SUBDIR))
        assert prefix is not None, name
        assert pretrained.checkpoint_bytes(prefix) <= pretrained.MAX_BYTES
        info = pretrained.info(name)
        assert info["name"] == name
        assert info["command"].startswith("python -m tfpvae.main ")
        assert (REPO / info["reported_in"]).is_file(), info["reported_in"]


def _reported(document: Path, figure: float) -> bool:
    """Whether the document states `figure` to two decimals."""
    return re.search(rf"(?<![\d.]){figure:.2f}(?!\d)",
                     document.read_text(encoding="utf-8")) is not None


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_gives_its_reported_bound_on_a_slice(name):
    folder = pretrained.path(name)
    evaluation = pretrained.info(name)["evaluation"]
    nll, elbo = evaluation["nll_nats"], evaluation["elbo"]
    document = REPO / pretrained.info(name)["reported_in"]
    assert _reported(document, nll), f"{document.name} does not give {nll:.2f}"
    model = tfpvae.load_pretrained(name)
    dataset = evaluate.load_run_dataset(folder)
    split = evaluation["split"]
    x = dataset.splits[split][:SLICE]
    labels = dataset.labels[split][:SLICE] if model.conditions_on_labels else None
    bound = -model.log_likelihood(x, k=K, seed=0, labels=labels).numpy()
    se = bound.std(ddof=1) / np.sqrt(len(bound))
    assert nll - 4 * se <= bound.mean() <= -elbo + 4 * se, (
        bound.mean(), se, nll, elbo)


@pytest.mark.parametrize("name", [n for n in SHIPPED if "classification_error"
                                  in pretrained.info(n)["evaluation"]])
def test_shipped_classifier_gives_its_reported_error(name):
    # The semi-supervised models: q(y|x)'s error on the evaluated examples
    # is deterministic, so it must be the reported one.
    evaluation = pretrained.info(name)["evaluation"]
    model = tfpvae.load_pretrained(name)
    dataset = evaluate.load_run_dataset(pretrained.path(name))
    split, n = evaluation["split"], evaluation["num_examples"]
    errors = model.evaluation_metrics(
        dataset.splits[split][:n], dataset.labels[split][:n])["classification_error"]
    error = float(np.mean(errors))
    assert error == pytest.approx(evaluation["classification_error"], abs=0.5 / n)
    document = REPO / pretrained.info(name)["reported_in"]
    assert f"{100 * error:.1f}%" in document.read_text(encoding="utf-8")


def test_load_by_path_gives_the_same_model():
    name = "conditional_mnist"
    by_name = tfpvae.load_pretrained(name)
    by_path = tfpvae.load(str(REPO / "pretrained" / name))
    assert len(by_name.variables) == len(by_path.variables)
    for a, b in zip(by_name.variables, by_path.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images = by_name.sample(3, labels=[0, 1, 2], seed=0, mean=True).numpy()
    assert images.shape == (3, 28, 28, 1)


def test_an_unknown_name_says_which_models_ship():
    with pytest.raises(pretrained.PretrainedError,
                       match=r"no pretrained model 'nope'.*conditional_mnist"):
        pretrained.load("nope")


def test_the_environment_variable_moves_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.ENVIRONMENT_VARIABLE, str(tmp_path))
    assert pretrained.names() == []
    with pytest.raises(pretrained.PretrainedError, match="shipped: none"):
        pretrained.path("conditional_mnist")


def test_ship_copies_the_best_checkpoint_and_refuses_what_does_not_ship(tmp_path):
    source = REPO / "pretrained" / "conditional_mnist"
    run = tmp_path / "run"
    best = run / run_dir.BEST_SUBDIR
    best.mkdir(parents=True)
    for f in (source / run_dir.CHECKPOINT_SUBDIR).iterdir():
        (best / f.name).write_bytes(f.read_bytes())
    (run / run_dir.MODEL_CONFIG_FILE).write_bytes(
        (source / run_dir.MODEL_CONFIG_FILE).read_bytes())
    (run / run_dir.HISTORY_FILE).write_text(json.dumps({"step": 5310, "epoch": 59.0}))
    with pytest.raises(pretrained.PretrainedError, match="no evaluation of"):
        pretrained.ship(str(run), str(tmp_path / "x"), command="c",
                        reported_in="r", description="d")
    evaluation = {"checkpoint": str(best / "ckpt-5310"), "nll_nats": 97.0,
                  "posterior_mean_variances": [1.0]}
    (run / run_dir.EVALUATION_FILE).write_text(json.dumps(evaluation))
    out = tmp_path / "pretrained" / "copy"
    record = pretrained.ship(str(run), str(out), command="python -m tfpvae.main",
                             reported_in="docs/tutorials.md", description="d")
    assert record["step"] == 5310 and record["epoch"] == 59.0
    assert record["evaluation"] == {"checkpoint": str(best / "ckpt-5310"),
                                    "nll_nats": 97.0}
    assert not (tmp_path / "pretrained" / "copy.partial").exists()
    assert json.loads((out / pretrained.INFO_FILE).read_text())["name"] == "copy"
    copy = tfpvae.load(str(out))
    original = tfpvae.load(str(source))
    for a, b in zip(copy.variables, original.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(pretrained.PretrainedError, match="exists"):
        pretrained.ship(str(run), str(out), command="c", reported_in="r",
                        description="d")
    with pytest.raises(pretrained.PretrainedError, match="MB, more than"):
        pretrained.ship(str(run), str(tmp_path / "big"), command="c",
                        reported_in="r", description="d", max_bytes=1000)
    assert not (tmp_path / "big").exists()
    with pytest.raises(pretrained.PretrainedError, match="no intact checkpoint"):
        pretrained.ship(str(tmp_path), str(tmp_path / "none"), command="c",
                        reported_in="r", description="d")
