"""Command-line trainer for tfpvae's variational autoencoders.

    python -m tfpvae.main --latent_dim=20 --likelihood=bernoulli
    python -m tfpvae.main --flagfile=flags/iaf.cfg --dataset=/path/to/data.npz
    python -m tfpvae.main --helpfull

trains a model and leaves a reloadable run in --model_dir (default
runs/<dataset>): checkpoints, TensorBoard logs, history.jsonl, metrics.json
and flags.txt; `tfpvae.load(model_dir)` returns the trained model. Running
the same command again resumes the run. The flags are defined in
`tfpvae.config`; `run` composes the steps: training
(`tfpvae.train.train_and_evaluate`), then the figures (`tfpvae.figures`),
then the export (`tfpvae.export`), both from the checkpoint selected by
validation.

Errors in the user's flags, files or data end the program with a one-line
message on stderr and a non-zero exit code; SIGINT/SIGTERM save a checkpoint
first and exit with 128 + the signal number.
"""

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tfpvae import config as config_lib
from tfpvae import export as export_lib
from tfpvae import figures
from tfpvae import inputs
from tfpvae import run_dir
from tfpvae import train

config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --help lists them.
FLAGS = flags.FLAGS


def run(config: config_lib.TrainConfig, model_dir: str) -> dict:
    """Trains (or resumes) the run, then draws its figures (--plots) and
    exports it (--export) from the checkpoint selected by validation.

    Returns:
        The training run's metrics (metrics.json).
    """
    metrics = train.train_and_evaluate(config, model_dir)
    if not metrics or not (config.plots or config.export):
        return metrics  # Not the chief of a multi-worker run, or nothing to do.
    # The model selected by validation, not the last step's.
    has_best = tf.train.latest_checkpoint(
        run_dir.best_checkpoint_dir(model_dir)) is not None
    selected = run_dir.load(model_dir, best=has_best)
    logging.info("Plots and export use the %s.",
                 f"best checkpoint (step {metrics['best_step']})"
                 if has_best else "latest checkpoint")
    if config.plots:
        figures.plot_training_run(selected, inputs.load_data(config), model_dir)
    if config.export:
        path = export_lib.export_saved_model(
            selected, run_dir.path(model_dir, run_dir.SAVED_MODEL_SUBDIR))
        logging.info("Exported a SavedModel to %s.", path)
    return metrics


def _quiet_tensorflow_info(record) -> bool:
    """Drops INFO records that TensorFlow's modules log through absl."""
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or f"{os.sep}tensorflow{os.sep}" not in record.pathname)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # TensorFlow's own INFO lines (checkpoint sharding, ...) are noise here.
    tf.get_logger().setLevel("WARNING")
    logging.get_absl_logger().addFilter(_quiet_tensorflow_info)
    try:
        if FLAGS.cpu_devices:
            train.configure_cpu_devices(FLAGS.cpu_devices)
        config = config_lib.from_flags(FLAGS)
        model_dir = FLAGS.model_dir or config_lib.default_model_dir(
            config.dataset)
        run(config, model_dir)
    except train.Interrupted as e:
        print(f"tfpvae: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # A second Ctrl-C: stop without saving.
        print("tfpvae: stopped; run the same command again to resume from the "
              "last checkpoint.", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (ValueError, train.TrainingDiverged) as e:
        logging.debug("Traceback of the error:", exc_info=True)
        sys.exit(f"tfpvae: error: {e}")


if __name__ == "__main__":
    app.run(main)
