"""The trainer: `train_and_evaluate(config, model_dir)` and its parts.

    loop.py       train_and_evaluate, read top to bottom
    step.py       optimizers, schedules, the compiled step, XLA fallback
    records.py    history.jsonl, TensorBoard, metrics.json
    progress.py   the progress line, throughput, SIGINT/SIGTERM
    devices.py    tf.distribute strategies and devices

The trainer never draws figures or exports: `python -m tfpvae.main`
composes training, then `tfpvae.figures`, then `tfpvae.export`.
"""

from tfpvae.inputs import check_data, load_data
from tfpvae.models import build_model
from tfpvae.run_dir import ModelDirError
from tfpvae.train.devices import configure_cpu_devices, is_chief, make_strategy
from tfpvae.train.loop import Selection, TrainingDiverged, train_and_evaluate
from tfpvae.train.progress import Interrupted, Progress
from tfpvae.train.step import (FAST_XLA_FLAGS, XlaFallback, base_optimizer,
                               build_optimizer, build_train_step, kl_weight,
                               kl_weight_tensor, learning_rate_schedule,
                               make_train_loop, make_train_step,
                               resolve_jit_compile, term_names,
                               use_fast_xla_flags)

__all__ = [
    "FAST_XLA_FLAGS", "Interrupted", "ModelDirError", "Progress", "Selection",
    "TrainingDiverged", "XlaFallback", "base_optimizer", "build_model",
    "build_optimizer", "build_train_step", "check_data",
    "configure_cpu_devices", "is_chief", "kl_weight", "kl_weight_tensor",
    "learning_rate_schedule", "load_data", "make_strategy", "make_train_loop",
    "make_train_step", "resolve_jit_compile", "term_names",
    "train_and_evaluate", "use_fast_xla_flags"]
