"""The likelihood-results configurations (flags/results/*.cfg) parse and run.

docs/results.md gives one command per configuration; test_docs.py checks that
its commands name real flags and files. Here each flagfile is parsed as the
command line would parse it, checked to hold the benchmark's protocol, and run
for two steps on the bundled 8x8 digits (the real runs take hours).
"""

import numpy as np
import pytest
from absl import flags

from tfpvae import config as config_lib
from tfpvae import train

from conftest import REPO

RESULTS = sorted((REPO / "flags" / "results").glob("*.cfg"))


@pytest.fixture(autouse=True)
def run_from_repo_root(monkeypatch):
    # As the commands in docs/results.md are: a second stage names its first
    # stage's flagfile from there.
    monkeypatch.chdir(REPO)


def parse(*argv):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["tfpvae", *argv])
    return flag_values


def preset(name):
    """The training configuration of flags/results/<name>.cfg."""
    return config_lib.from_flags(parse(f"--flagfile=flags/results/{name}.cfg"))


def differing(a, b):
    """The names of the settings in which configurations a and b differ."""
    a, b = a.to_dict(), b.to_dict()
    return {k for k in a if a[k] != b[k]}


def test_every_configuration_of_the_issue_has_a_flagfile():
    # vamp_iaf.cfg: the combination measured worse than the VampPrior alone.
    # iaf_restart.cfg: the second stage of configuration 4.
    # hvae_vamp.cfg, iwae_dreg.cfg: the hierarchical and DReG rows;
    # iwae_dreg_ablation.cfg: run 2 with the DReG gradient.
    assert [p.stem for p in RESULTS] == ["best", "hvae_vamp", "iaf",
                                         "iaf_restart", "iwae", "iwae_dreg",
                                         "iwae_dreg_ablation", "vae", "vamp",
                                         "vamp_iaf"]


def test_the_dreg_ablation_is_run_2_with_the_dreg_gradient():
    # docs/results.md reads its curve epoch by epoch against run 2's: the
    # two must train the same model with the same schedule, and differ by
    # the gradient estimator (and where run 2 was stopped by hand, 200).
    dreg, iwae = preset("iwae_dreg_ablation"), preset("iwae")
    assert differing(dreg, iwae) == {"gradient_estimator", "epochs"}
    assert dreg.gradient_estimator == "dreg" and dreg.epochs == 200


def test_best_is_vamp_with_a_learning_rate_anneal():
    # docs/results.md: run 5 continued a copy of run 3, which is what
    # best.cfg trains from scratch only if the two differ by the schedule
    # alone, and the decay starts after the copied epochs.
    best, vamp = preset("best"), preset("vamp")
    assert differing(best, vamp) == {"lr_schedule", "lr_decay_epochs",
                                     "epochs"}
    assert best.lr_schedule == "cosine"
    assert best.epochs - best.lr_decay_epochs >= 400


def test_iaf_restart_resumes_iaf_with_a_second_anneal():
    # The second stage trains the same model in the same directory, so only
    # training flags may differ; its rate is constant again when it resumes
    # at the first stage's last epoch (a warm restart), and early stopping
    # must not end it while the bound is worse than the first anneal's.
    first, second = preset("iaf"), preset("iaf_restart")
    assert differing(first, second) == {"epochs", "lr_decay_epochs",
                                        "early_stopping_patience"}
    assert second.early_stopping_patience == 0
    assert second.epochs - second.lr_decay_epochs > first.epochs
    assert (parse("--flagfile=flags/results/iaf_restart.cfg").model_dir
            == "runs/binarized_mnist_iaf")


@pytest.mark.parametrize("flagfile", RESULTS, ids=lambda p: p.stem)
def test_results_flagfile_parses_and_trains(flagfile, tmp_path):
    restart = flagfile.stem.endswith("_restart")
    run = flagfile.stem.removesuffix("_restart")
    flag_values = parse(f"--flagfile={flagfile}")
    preset = config_lib.from_flags(flag_values)
    # The protocol: static binarized MNIST as it is, selected by validation.
    assert preset.dataset.endswith("binarized_mnist.npz")
    assert preset.binarize == "none" and preset.likelihood == "bernoulli"
    # Selected by validation; stopped early, or by an anneal to rate 0.
    assert (preset.early_stopping_patience > 0 or restart
            or preset.lr_schedule == "cosine")
    assert flag_values.model_dir == f"runs/binarized_mnist_{run}"
    flag_values = parse(f"--flagfile={flagfile}", "--dataset=sklearn_digits",
                        "--binarize=dynamic", "--max_steps=2",
                        "--batch_size=32", "--eval_k=2",
                        "--mixture_components=8", "--jit_compile=false")
    config = config_lib.from_flags(flag_values)
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["eval_elbo"])


# --------------------------------------------------------------------------
# The semi-supervised and disentanglement results (flags/labels,
# flags/disentanglement).

DISENTANGLEMENT = sorted(p for p in (REPO / "flags" / "disentanglement").glob(
    "*.cfg") if p.stem != "base")
#: What the disentanglement models may differ in: their objective alone.
OBJECTIVE_SETTINGS = {"objective", "beta", "tc_weight", "tc_estimator",
                      "discriminator_learning_rate", "dip_lambda_od",
                      "dip_lambda_d"}


def test_m2_flagfile_holds_out_a_split_and_trains(tmp_path):
    flag_values = parse("--flagfile=flags/labels/m2_100.cfg")
    preset = config_lib.from_flags(flag_values)
    assert preset.dataset == "mnist_bundled" and preset.semi_supervised
    assert preset.labelled_examples == 100 and preset.validation_fraction == 0.2
    assert flag_values.model_dir == "runs/mnist_bundled_m2_100"
    config = config_lib.from_flags(parse(
        "--flagfile=flags/labels/m2_100.cfg", "--dataset=sklearn_digits",
        "--max_steps=2", "--batch_size=16", "--labelled_batch_size=10",
        "--jit_compile=false"))
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2
    assert 0 <= metrics["eval_classification_error"] <= 1


def test_disentanglement_models_differ_only_in_their_objective():
    configs = {p.stem: config_lib.from_flags(parse(
        f"--flagfile=flags/disentanglement/{p.name}")) for p in DISENTANGLEMENT}
    assert sorted(configs) == ["beta_tcvae", "beta_vae", "dip_vae_i",
                               "factor_vae", "vae"]
    assert configs["vae"].dataset == "sprites"
    assert configs["vae"].objective == "elbo" and configs["vae"].beta == 1
    for name, config in configs.items():
        assert differing(configs["vae"], config) <= OBJECTIVE_SETTINGS, name


@pytest.mark.parametrize("flagfile", DISENTANGLEMENT, ids=lambda p: p.stem)
def test_disentanglement_flagfile_trains(flagfile, tmp_path):
    config = config_lib.from_flags(parse(
        f"--flagfile={flagfile}", "--dataset=sprites:256", "--max_steps=2",
        "--batch_size=16", "--eval_every=0", "--plots=false",
        "--discriminator_hidden_units=8"))
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["eval_elbo"])


def test_the_study_runs_jobs_at_once_and_keeps_the_table_order(tmp_path,
                                                              monkeypatch):
    import importlib, json, sys, threading  # pylint: disable=import-outside-toplevel,multiple-imports
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    study = importlib.import_module("disentanglement_study")
    flag_values = flags.FlagValues()
    study.define_flags(flag_values)
    output = tmp_path / "study.json"
    flag_values(["study", "--models=vae,beta_vae", "--seeds=0,1", "--jobs=2",
                 f"--output={output}"])
    monkeypatch.setattr(study, "FLAGS", flag_values)
    running, most = [], []
    lock = threading.Lock()
    # Each run waits for a second one: one at a time would break the barrier.
    barrier = threading.Barrier(2, timeout=60)

    def run_one(model, seed):
        with lock:
            running.append(model)
            most.append(len(running))
        barrier.wait()
        with lock:
            running.remove(model)
        return {"model": model, "seed": int(seed),
                "mig": 0.1 + 0.1 * int(seed) * (model == "vae")}

    monkeypatch.setattr(study, "run_one", run_one)
    study.main(["study"])
    rows = json.loads(output.read_text())["runs"]
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("vae", 0), ("beta_vae", 0), ("vae", 1), ("beta_vae", 1)]
    assert max(most) == 2  # Two at once, never more.
    # The traversals docs/disentanglement.md shows: the highest MIG's (the
    # first seed on a tie).
    assert json.loads(output.read_text())["best_by_mig"] == {
        "vae": 1, "beta_vae": 0}
    del sys.modules["disentanglement_study"]


def test_the_study_measures_how_scores_agree_and_the_seed_spread(monkeypatch):
    import importlib, sys  # pylint: disable=import-outside-toplevel,multiple-imports
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    study = importlib.import_module("disentanglement_study")
    # Two models of two seeds; every score the same ranking as MIG, except
    # SAP (reversed) and distortion (one swap).
    migs = {("a", 0): 0.1, ("a", 1): 0.3, ("b", 0): 0.5, ("b", 1): 0.7}
    rows = [{"model": m, "seed": s, **{k: v for k in study.AGREEMENT},
             "sap": -v, "distortion": [1, 3, 2, 4][i]}
            for i, ((m, s), v) in enumerate(migs.items())]
    result = study.agreement(rows)
    assert result["runs"] == 4
    assert result["spearman"]["mig~dci_disentanglement"] == 1.0
    assert result["spearman"]["mig~sap"] == -1.0
    # Ranks 1 2 3 4 against 1 3 2 4: 1 - 6 * 2 / (4 * 15) = 0.8.
    assert result["spearman"]["mig~distortion"] == pytest.approx(0.8)
    # Variance over seeds 0.02 for each model; the means 0.2 and 0.6.
    spread = result["spread"]["mig"]
    assert spread["seed_sd"] == pytest.approx(0.02 ** 0.5)
    assert spread["model_sd"] == pytest.approx(0.08 ** 0.5)
    assert "mig~beta_vae" in "\n".join(study.agreement_lines(result))
    del sys.modules["disentanglement_study"]


def test_the_study_scores_a_run_once_for_the_same_settings(tmp_path, monkeypatch):
    # tools/disentanglement_study.py: a run with metrics.json is not trained
    # again, and one scored with the same settings is not scored again (the
    # stamp also records how long the scoring took), nor drawn again.
    import importlib, json, sys  # pylint: disable=import-outside-toplevel,multiple-imports
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    study = importlib.import_module("disentanglement_study")
    flag_values = flags.FlagValues()
    study.define_flags(flag_values)
    flag_values(["study"])
    monkeypatch.setattr(study, "FLAGS", flag_values)
    monkeypatch.setattr(study, "REPO", tmp_path)
    run = tmp_path / "runs" / "sprites_vae_0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"step": 5000}))
    (run / "history.jsonl").write_text(json.dumps({"step": 5000, "elapsed": 60.0}))
    scores = {s: 0.5 for s in study.SCORES}
    (run / "evaluation.json").write_text(json.dumps(
        {"elbo": -90.0, "distortion": 80.0, "rate": 10.0, "nll_nats": 88.0,
         "disentanglement": scores}))
    (run / "plots").mkdir()
    (run / "plots" / "traversals.png").write_bytes(b"drawn")
    calls = []
    monkeypatch.setattr(study, "_run", lambda argv, log: calls.append(argv[0]))
    stamp = run / "evaluation_settings.json"
    stamp.write_text(json.dumps({**study._evaluation_settings(), "seconds": 99.0}))
    row = study.run_one("vae", "0")
    assert calls == [] and row["mig"] == 0.5 and row["train_seconds"] == 60.0
    stamp.write_text(json.dumps({**study._evaluation_settings(), "k": 1, "seconds": 9.0}))
    study.run_one("vae", "0")
    assert calls == ["tfpvae.evaluate"]
    assert "seconds" in json.loads(stamp.read_text())
    # The traversal figure is drawn once, when it is missing.
    (run / "plots" / "traversals.png").unlink()
    study.run_one("vae", "0")
    assert calls == ["tfpvae.evaluate", "tfpvae.plot"]
    del sys.modules["disentanglement_study"]
