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

Without --dataset the data is MNIST from tensorflow_datasets when it is
prepared or can be downloaded, else the MNIST digits bundled with tfpvae
(`data.resolve_default_source`, one log line). It is resolved once, before
the default --model_dir is chosen (runs/mnist or runs/mnist_bundled), and
the run records the source it used (flags.json, metrics.json).

Output. A run prints tfpvae's own lines: one line says what it computes on
(the devices, the strategy and its replicas, the precision, XLA). The
C++ log of TensorFlow (oneDNN, CUDA and CPU-feature notices, cuInit), the
Python warnings of the dependencies and their log records below ERROR
(e.g. tensorflow_datasets') are hidden: TF_CPP_MIN_LOG_LEVEL is
set to 3 before TensorFlow is imported, unless it is set already, and the
lines TensorFlow's C++ logger writes before it reads that setting are
dropped from stderr while TensorFlow is imported. --verbosity=1 (or higher,
absl's flag, also -v 1) or the environment variable TFPVAE_VERBOSE=1 shows
them all. As absl parses --verbosity only after the imports, it is read
here from the command line itself (not from a --flagfile); python's own -W
or PYTHONWARNINGS keep deciding about warnings when given.

Errors in the user's flags, files or data, a damaged checkpoint, a full or
read-only disk end the program with a one-line message on stderr and a
non-zero exit code. SIGINT/SIGTERM during training save a checkpoint first;
at any other moment (start-up: imports, data loading, building; or the
figures and export after training) there is nothing to save: one line, and
the program stops. Either way the exit code is 128 + the signal number.

The log level, the stderr filter and the signal handlers are set at the top
of this module, before it imports TensorFlow. They cover TensorFlow's
start-up only when nothing imported TensorFlow before: `python -m
tfpvae.main` first runs tfpvae/__init__.py, which must therefore import the
package's modules lazily.
"""

# Before TensorFlow is imported: the signals, the log level, the warnings.
import contextlib
import os
import re
import shlex
import signal
import sys
import tempfile
import warnings

#: What TensorFlow's C++ logger writes: its lines (the absl format
#: "I0000 00:00:1796141743.733656   29512 port.cc:153] ..." and the older
#: "2024-01-01 12:00:00.123456: I tensorflow/...cc:12] ..."), absl's notice
#: that it is not initialised yet, and the second line of the CPU-feature
#: notice. FATAL lines (F...) are never hidden.
CPP_LOG_LINE = re.compile(
    r"[IWE]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+\.(cc|h):\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+\.(cc|h):\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow")


def verbose_requested(argv: list[str], environ) -> bool:
    """Whether the user asked for the dependencies' output: TFPVAE_VERBOSE
    (anything but '' or '0'), or absl's --verbosity (-v) of 1 or more on the
    command line (the last one counts, as for absl)."""
    if environ.get("TFPVAE_VERBOSE", "") not in ("", "0"):
        return True
    verbosity = 0
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, has_value, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name not in ("verbosity", "v"):
            continue
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) else ""
        try:
            verbosity = int(value)
        except ValueError:
            pass  # absl reports the bad value.
    return verbosity >= 1


@contextlib.contextmanager
def cpp_log_hidden(enabled: bool = True):
    """Drops the lines of TensorFlow's C++ logger (`CPP_LOG_LINE`) that are
    written to stderr inside the block; the other lines are written after it.

    The block's stderr (file descriptor 2, which C++ code writes to) goes
    to a temporary file. TensorFlow's first lines come before it reads
    TF_CPP_MIN_LOG_LEVEL, so the level alone does not hide them.
    """
    if not enabled:
        yield
        return
    try:
        captured = tempfile.TemporaryFile()
    except OSError:  # No room for it: show everything.
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", errors="replace")
        captured.close()
        kept = "".join(line for line in text.splitlines(keepends=True)
                       if not CPP_LOG_LINE.match(line))
        if kept:
            os.write(2, kept.encode())


#: What the process is doing, for the message of a signal outside training.
_stage = ["during start-up, before training began; nothing needed saving. "
          "Run the same command again to start (or resume) the run."]


def _stop_at_once(signum, frame) -> None:
    """SIGINT/SIGTERM outside training: one line, exit 128 + signum."""
    del frame
    os.write(2, f"tfpvae: interrupted by {signal.Signals(signum).name} "
                f"{_stage[0]}\n".encode())
    raise SystemExit(128 + signum)


def _stopped_by_signal(error: BaseException) -> SystemExit | None:
    """The SystemExit of `_stop_at_once` behind `error`, if any.

    A signal that arrives while a C extension initialises (TensorFlow's
    pybind11 modules) raises the handler's SystemExit inside the module's
    init, which turns it into "ImportError: initialization failed" caused
    by it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SystemExit):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _start_quietly(quiet: bool) -> bool:
    """Installs the signal handlers and, when `quiet`, hides the C++ log
    and the dependencies' warnings. Returns whether TensorFlow's own
    start-up lines are to be dropped (we set TF_CPP_MIN_LOG_LEVEL)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_at_once)
    if not quiet:
        return False
    if not sys.warnoptions:  # python -W or PYTHONWARNINGS decide otherwise.
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"tfpvae(\.|$)")
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return "tensorflow" not in sys.modules


_QUIET = __name__ == "__main__" and not verbose_requested(sys.argv,
                                                          os.environ)
_HIDE_CPP_START = __name__ == "__main__" and _start_quietly(_QUIET)

# pylint: disable=wrong-import-position
try:
    with cpp_log_hidden(_HIDE_CPP_START):
        from absl import app
        from absl import flags
        from absl import logging
        import tensorflow as tf

        from tfpvae import config as config_lib
        from tfpvae import data
        from tfpvae import export as export_lib
        from tfpvae import figures
        from tfpvae import inputs
        from tfpvae import run_dir
        from tfpvae import train
        from tfpvae.train import devices
except Exception as import_error:  # pylint: disable=broad-exception-caught
    # A signal during an extension's init: its line is written; exit with
    # its code rather than the import's traceback.
    _stop = _stopped_by_signal(import_error)
    if _stop is None:
        raise
    raise _stop from None
# pylint: enable=wrong-import-position

config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --help lists them.
FLAGS = flags.FLAGS


def resolve_dataset(config: config_lib.TrainConfig) -> config_lib.TrainConfig:
    """The settings with the default dataset ('') replaced by the source it
    means on this machine ("mnist" or "mnist_bundled",
    `data.resolve_default_source`), so that the default --model_dir and
    flags.json name the data actually used. Other datasets are kept."""
    if config.dataset:
        return config
    return config.replace(dataset=data.resolve_default_source(
        config.data_dir or None))


def settings(flag_values) -> tuple[config_lib.TrainConfig, str]:
    """The run's settings from the flags, and its model directory.

    --strategy=multi_worker without TF_CONFIG is refused first (before any
    work); then the default dataset is resolved (`resolve_dataset`) and the
    default --model_dir named after it.

    Raises:
        ValueError: one line, for settings that cannot run.
    """
    config = config_lib.from_flags(flag_values)
    devices.check_strategy(config.strategy)
    config = resolve_dataset(config)
    return config, (flag_values.model_dir
                    or config_lib.default_model_dir(config.dataset))


def run(config: config_lib.TrainConfig, model_dir: str) -> dict:
    """Trains (or resumes) the run, then draws its figures (--plots) and
    exports it (--export) from the checkpoint selected by validation.

    Returns:
        The training run's metrics (metrics.json).
    """
    config = resolve_dataset(config)
    metrics = train.train_and_evaluate(config, model_dir)
    if not metrics:
        return metrics  # Not the chief of a multi-worker run.
    if config.plots or config.export:
        _figures_and_export(config, model_dir, metrics)
    where = shlex.quote(model_dir)
    logging.info("Next: `python -m tfpvae.evaluate --model_dir=%s --best "
                 "--k=5000` estimates log p(x) with the selected model; "
                 "`python -m tfpvae.plot --model_dir=%s` draws its figures.",
                 where, where)
    return metrics


def _figures_and_export(config, model_dir, metrics) -> None:
    """--plots and --export, from the checkpoint selected by validation."""
    _stage[0] = ("after training (its checkpoints are saved), while drawing "
                 "the figures or exporting; run the same command again to "
                 "finish them.")
    # The model selected by validation, not the last step's (load falls
    # back to the latest intact checkpoint when best/ is damaged).
    has_best = bool(run_dir.list_checkpoints(
        run_dir.best_checkpoint_dir(model_dir)))
    logging.info("Plots and export use the %s.",
                 f"best checkpoint (step {metrics['best_step']})"
                 if has_best else "latest checkpoint")
    selected = run_dir.load(model_dir, best=has_best)
    if config.plots:
        figures.plot_training_run(selected, inputs.load_data(config), model_dir)
    if config.export:
        path = export_lib.export_saved_model(
            selected, run_dir.path(model_dir, run_dir.SAVED_MODEL_SUBDIR))
        logging.info("Exported a SavedModel to %s.", path)


def _quiet_tensorflow_info(record) -> bool:
    """Drops INFO records that TensorFlow's modules log through absl."""
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or f"{os.sep}tensorflow{os.sep}" not in record.pathname)


#: The package's folder: absl records logged from files in it are tfpvae's.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _tfpvae_or_error(record) -> bool:
    """Keeps tfpvae's own records, and errors of the libraries it uses
    (their INFO and WARNING records, e.g. tensorflow_datasets', are hidden
    unless --verbosity or TFPVAE_VERBOSE)."""
    return (record.levelno >= logging.converter.STANDARD_ERROR
            or os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))


def _error(message: str) -> None:
    """Exits with `message` as one line on stderr (exit code 1)."""
    logging.debug("Traceback of the error:", exc_info=True)
    sys.exit("tfpvae: error: " + " ".join(str(message).split()))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # TensorFlow's own INFO lines (checkpoint sharding, ...) are noise here.
    tf.get_logger().setLevel("ERROR" if _QUIET else "WARNING")
    logging.get_absl_logger().addFilter(
        _tfpvae_or_error if _QUIET else _quiet_tensorflow_info)
    model_dir = FLAGS.model_dir
    try:
        if FLAGS.cpu_devices:
            train.configure_cpu_devices(FLAGS.cpu_devices)
        config, model_dir = settings(FLAGS)
        run(config, model_dir)
    except train.Interrupted as e:
        print(f"tfpvae: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # A second Ctrl-C: stop without saving.
        print("tfpvae: stopped; run the same command again to resume from the "
              "last checkpoint.", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (ValueError, train.TrainingDiverged, run_dir.StorageError) as e:
        _error(e)
    except (OSError, tf.errors.OpError) as e:  # The figures, the export.
        problem = run_dir.storage_problem(e)
        if problem is None:
            raise
        where = getattr(e, "filename", None) or model_dir
        _error(f"{run_dir.storage_advice(problem, where)} (the saved "
               f"checkpoints are kept).")


if __name__ == "__main__":
    app.run(main)
