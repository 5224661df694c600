"""Trains and scores the disentanglement models of flags/disentanglement/.

    python tools/disentanglement_study.py --seeds=0,1,2 \\
        --output=docs/benchmarks/disentanglement.json

For every model (a flagfile flags/disentanglement/<model>.cfg) and seed, it
runs, each as its own process and from the repository root,

    python -m tfpvae.main --flagfile=flags/disentanglement/<model>.cfg \\
        --seed=<seed> --model_dir=runs/sprites_<model>_<seed>
    python -m tfpvae.evaluate --model_dir=runs/sprites_<model>_<seed> \\
        --disentanglement --k=<k> ...
    python -m tfpvae.plot --model_dir=runs/sprites_<model>_<seed> \\
        --which=traversal_grid

With --jobs=N, N runs go at once (a second study started on the same runs
is refused by the trainer's lock on each run directory). A run that ended
is not trained again and one that was interrupted resumes
(the trainer's own resume), and a run that already has its evaluation.json
from these settings is not scored again (nor drawn again once its
plots/traversals.png exists), so the command can be repeated
until the table is complete. It prints the table (mean and standard
deviation over the seeds of every score, the reconstruction term and the
training time), how the scores agree over the runs (rank correlations, and
the spread over seeds against the spread over models) and writes every
run's numbers as JSON with --output.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import scipy.stats
from absl import app, flags

from tfpvae import run_dir

REPO = Path(__file__).resolve().parents[1]
SCORES = ("mig", "sap", "dci_disentanglement", "dci_completeness",
          "dci_informativeness", "beta_vae", "factor_vae")

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the study's flags (on absl's FLAGS by default)."""
    flags.DEFINE_list("models", ["vae", "beta_vae", "beta_tcvae",
                                 "factor_vae", "dip_vae_i"],
                      "Flagfiles flags/disentanglement/<model>.cfg to run.",
                      flag_values=flag_values)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every model.",
                      flag_values=flag_values)
    flags.DEFINE_integer("k", 10, "Importance samples of the evaluation's "
                         "log p(x).", flag_values=flag_values)
    flags.DEFINE_integer("examples", 2000,
                         "Valid examples of the bounds and of MIG, SAP and "
                         "DCI (--max_examples of the evaluation; its ELBO "
                         "averages --k posterior draws).",
                         flag_values=flag_values)
    flags.DEFINE_integer("train_points", 1000,
                         "--disentanglement_train_points of the evaluation "
                         "(disentanglement_lib's 10,000 cost about 30 "
                         "minutes of one core per model here).",
                         flag_values=flag_values)
    flags.DEFINE_integer("test_points", 500,
                         "--disentanglement_test_points of the evaluation.",
                         flag_values=flag_values)
    flags.DEFINE_string("output", None, "Write every run's numbers here "
                        "(JSON).", flag_values=flag_values)
    flags.DEFINE_boolean("train_only", False, "Train, do not score.",
                         flag_values=flag_values)
    flags.DEFINE_integer("jobs", 1, "Runs trained and scored at the same "
                         "time, each in its own processes (with several, "
                         "give each one thread: TF_NUM_INTRAOP_THREADS=1 "
                         "TF_NUM_INTEROP_THREADS=1).", lower_bound=1,
                         flag_values=flag_values)


def _run(argv: list[str], log: Path) -> None:
    with open(log, "a") as out:
        result = subprocess.run([sys.executable, "-m", *argv], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        sys.exit(f"{' '.join(argv)} failed with exit code "
                 f"{result.returncode}; see {log}")


def _evaluation_settings() -> dict:
    return {"k": FLAGS.k, "examples": FLAGS.examples,
            "train_points": FLAGS.train_points,
            "test_points": FLAGS.test_points}


def run_one(model: str, seed: str) -> dict:
    """Trains (or resumes) and scores one model and seed; its numbers."""
    model_dir = REPO / "runs" / f"sprites_{model}_{seed}"
    log = REPO / "runs" / f"sprites_{model}_{seed}.log"
    model_dir.parent.mkdir(exist_ok=True)
    metrics_file = model_dir / "metrics.json"
    if not metrics_file.exists():
        _run(["tfpvae.main", f"--flagfile=flags/disentanglement/{model}.cfg",
              f"--seed={seed}", f"--model_dir={model_dir}"], log)
    metrics = json.loads(metrics_file.read_text())
    if FLAGS.train_only:
        return {"model": model, "seed": int(seed), "metrics": metrics}
    evaluation_file = model_dir / "evaluation.json"
    stamp = model_dir / "evaluation_settings.json"
    settings = _evaluation_settings()
    scored = json.loads(stamp.read_text()) if stamp.exists() else {}
    scored.pop("seconds", None)  # How long the scoring took, not a setting.
    if not (evaluation_file.exists() and scored == settings):
        start = time.monotonic()
        _run(["tfpvae.evaluate", f"--model_dir={model_dir}",
              "--disentanglement", f"--k={FLAGS.k}", "--split=valid",
              f"--max_examples={FLAGS.examples}",
              f"--elbo_samples={FLAGS.k}",
              f"--disentanglement_train_points={FLAGS.train_points}",
              f"--disentanglement_test_points={FLAGS.test_points}"], log)
        settings["seconds"] = round(time.monotonic() - start, 1)
        stamp.write_text(json.dumps(settings))
    if not (model_dir / "plots" / "traversals.png").exists():
        # The figure docs/disentanglement.md shows of the best of each family.
        _run(["tfpvae.plot", f"--model_dir={model_dir}",
              "--which=traversal_grid"], log)
    evaluation = json.loads(evaluation_file.read_text())
    return {"model": model, "seed": int(seed),
            # metrics.json has no time; the history's last record has.
            "train_seconds": run_dir.read_history(str(model_dir))[-1]["elapsed"],
            "steps": metrics.get("step"),
            "elbo": evaluation["elbo"], "distortion": evaluation["distortion"],
            "rate": evaluation["rate"],
            "nll": evaluation["nll_nats"],
            **{s: evaluation["disentanglement"][s] for s in SCORES}}


def table(rows: list[dict]) -> str:
    columns = ("distortion", "rate", *SCORES, "train_seconds")
    lines = ["| model | seeds | " + " | ".join(columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        cells = []
        for c in columns:
            values = [r[c] for r in mine if r.get(c) is not None]
            if not values:
                cells.append("-")
            elif c == "train_seconds":
                cells.append(f"{statistics.mean(values) / 60:.0f} min")
            else:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                digits = 1 if c in ("distortion", "rate") else 2
                cells.append(f"{statistics.mean(values):.{digits}f} ± "
                             f"{spread:.{digits}f}")
        lines.append(f"| {model} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_runs(rows: list[dict]) -> dict[str, int]:
    """The seed of each model whose MIG is highest (the run whose
    traversals docs/disentanglement.md shows for that model)."""
    best = {}
    for row in rows:
        if row.get("mig") is None:
            continue
        current = best.get(row["model"])
        if current is None or row["mig"] > current["mig"]:
            best[row["model"]] = row
    return {model: row["seed"] for model, row in best.items()}


#: The scores whose agreement `agreement` measures (DCI's disentanglement
#: for DCI), and the reconstruction term they trade against.
AGREEMENT = ("mig", "sap", "dci_disentanglement", "beta_vae", "factor_vae",
             "distortion")


def agreement(rows: list[dict]) -> dict:
    """How the scores agree over the runs, and how much of their spread is
    the seed's (the two questions of Locatello et al., 2019).

    "spearman": the rank correlation of every pair of `AGREEMENT` over all
    runs. "seed_sd": the standard deviation over the seeds of one model,
    pooled over the models (the root of the mean variance); "model_sd": the
    standard deviation of the models' means. A score whose seed_sd is as
    large as its model_sd does not tell the models apart."""
    scored = [r for r in rows if all(r.get(k) is not None for k in AGREEMENT)]
    spearman = {}
    for i, a in enumerate(AGREEMENT if len(scored) > 2 else ()):
        for b in AGREEMENT[i + 1:]:
            rho = scipy.stats.spearmanr([r[a] for r in scored],
                                        [r[b] for r in scored]).statistic
            spearman[f"{a}~{b}"] = round(float(rho), 3)
    models = list(dict.fromkeys(r["model"] for r in scored))
    spread = {}
    for key in AGREEMENT:
        by_model = [[r[key] for r in scored if r["model"] == m] for m in models]
        seeds = [v for v in by_model if len(v) > 1]
        if len(models) < 2 or not seeds:
            continue
        spread[key] = {
            "seed_sd": statistics.fmean(statistics.variance(v)
                                        for v in seeds) ** 0.5,
            "model_sd": statistics.stdev(statistics.fmean(v)
                                         for v in by_model)}
    return {"runs": len(scored), "spearman": spearman, "spread": spread}


def agreement_lines(result: dict) -> list[str]:
    lines = [f"Rank correlations over {result['runs']} runs:"]
    lines += [f"  {pair:40} {rho:+.2f}"
              for pair, rho in result["spearman"].items()]
    lines.append("Standard deviation over seeds (pooled) / of the model means:")
    lines += [f"  {key:20} {s['seed_sd']:.3f} / {s['model_sd']:.3f}"
              for key, s in result["spread"].items()]
    return lines


def main(argv):
    del argv
    # Seed by seed, so that an interrupted study has every model once.
    runs = [(model, seed) for seed in FLAGS.seeds for model in FLAGS.models]
    with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
        rows = list(pool.map(lambda run: run_one(*run), runs))
    if FLAGS.train_only:
        return
    print(table(rows))
    scores_agree = agreement(rows)
    print("\n".join(agreement_lines(scores_agree)))
    best = best_runs(rows)
    for model, seed in best.items():
        print(f"Best {model} by MIG: seed {seed}, "
              f"runs/sprites_{model}_{seed}/plots/traversals.png")
    if FLAGS.output:
        run_dir.write_json_atomic(FLAGS.output, {
            "date": time.strftime("%Y-%m-%d"), "load": os.getloadavg(),
            "evaluation": _evaluation_settings(), "runs": rows,
            "best_by_mig": best, "agreement": scores_agree})


if __name__ == "__main__":
    define_flags()
    app.run(main)
