"""Copies a trained run's selected checkpoint into pretrained/<name>/.

    python -m tfpvae.evaluate --model_dir=runs/tutorials/conditional_mnist \\
        --k=5000 --best
    python tools/ship_pretrained.py --model_dir=runs/tutorials/conditional_mnist \\
        --name=conditional_mnist --reported_in=docs/tutorials.md \\
        --train_args="--flagfile=flags/conditional_mnist.cfg --dataset=mnist_bundled" \\
        --description="Conditional VAE (Sohn et al., 2015) on the bundled MNIST"

The run must have a checkpoint in best/ (selection by validation) and,
the evaluation.json that `python -m tfpvae.evaluate --best` wrote of that
checkpoint (the figures the docs report; they are kept in pretrained.json). tests/test_pretrained.py
then loads every folder of pretrained/ and compares the model's bound on a
slice of the held-out data with that evaluation and with the document
named by --reported_in. See `tfpvae.pretrained`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from absl import app, flags

from tfpvae import pretrained

REPO = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the tool's flags (on absl's FLAGS by default)."""
    flags.DEFINE_string("model_dir", None, "The trained run to ship.",
                        flag_values=flag_values)
    flags.DEFINE_string("name", None, "The shipped model's name: the folder "
                        "pretrained/<name>.", flag_values=flag_values)
    flags.DEFINE_string("train_args", None, "The arguments of `python -m "
                        "tfpvae.main` that trained the run, from the "
                        "repository root.", flag_values=flag_values)
    flags.DEFINE_string("reported_in", "docs/results.md", "The document that "
                        "reports the model's figures.",
                        flag_values=flag_values)
    flags.DEFINE_string("description", None, "One line on the model.",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where the pretrained/ folder "
                        "is (default: the repository's).",
                        flag_values=flag_values)


def main(argv: list[str]) -> None:
    del argv
    missing = [n for n in ("model_dir", "name", "train_args", "description")
               if not FLAGS[n].value]
    if missing:
        raise app.UsageError(f"--{', --'.join(missing)} must be given.")
    try:
        record = pretrained.ship(
            FLAGS.model_dir,
            os.path.join(FLAGS.output_dir or REPO / "pretrained", FLAGS.name),
            command=f"python -m tfpvae.main {FLAGS.train_args}",
            reported_in=FLAGS.reported_in,
            description=FLAGS.description)
    except pretrained.PretrainedError as e:
        raise app.UsageError(str(e)) from None
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
