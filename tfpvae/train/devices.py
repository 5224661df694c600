"""Devices and tf.distribute strategies of a training run.

"default" trains on one device; "mirrored" replicates over all local GPUs,
or over the logical CPUs when there is none (`configure_cpu_devices`);
"multi_worker" is a `MultiWorkerMirroredStrategy` over the cluster in the
TF_CONFIG environment variable, which must be set (`check_strategy`).
Only the chief worker writes the model directory (`is_chief`).
`describe` is the one log line that says what a run computes on.
"""

from __future__ import annotations

import collections
import json
import os

import tensorflow as tf

#: Where the flags and TF_CONFIG of a multi-worker run are explained.
DISTRIBUTED_DOCS = "docs/howto/distributed.md"

#: The numbers a --mixed_precision policy computes in.
_PRECISION = {"none": "float32",
              "mixed_float16": "float16 compute, float32 variables",
              "mixed_bfloat16": "bfloat16 compute, float32 variables"}


def configure_cpu_devices(n: int) -> None:
    """Splits the CPU into `n` logical devices (before TensorFlow starts).

    Raises:
        ValueError: If TensorFlow's devices are already initialised.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:
        raise ValueError(f"cannot split the CPU into {n} devices once "
                         f"TensorFlow has started ({e}).") from None


def check_strategy(name: str, environ=None) -> None:
    """Refuses --strategy=multi_worker without a usable TF_CONFIG.

    Without TF_CONFIG, MultiWorkerMirroredStrategy would train as one
    worker, silently; this says so before any work is done.

    Args:
        name: The strategy's name.
        environ: The environment (default `os.environ`).

    Raises:
        ValueError: one line naming TF_CONFIG and the docs page.
    """
    if name != "multi_worker":
        return
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        raise ValueError(
            f"--strategy=multi_worker needs the TF_CONFIG environment "
            f"variable (the cluster and this worker's task), set on every "
            f"worker as {DISTRIBUTED_DOCS} shows; on one host use "
            f"--strategy=default or --strategy=mirrored.")
    try:
        cluster = json.loads(text).get("cluster")
    except (ValueError, AttributeError):
        cluster = None
    if not cluster:
        raise ValueError(
            f"TF_CONFIG is not JSON with a \"cluster\" of workers "
            f"(TF_CONFIG={text[:80]!r}); see {DISTRIBUTED_DOCS} for its form.")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` ("default", "mirrored", "multi_worker").

    "mirrored" replicates over all local GPUs, or over all logical CPUs when
    there is no GPU (see `configure_cpu_devices`); "multi_worker" reads the
    cluster from the TF_CONFIG environment variable.

    Raises:
        ValueError: "multi_worker" without TF_CONFIG (`check_strategy`).
    """
    check_strategy(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the model directory (the chief worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type in (None, "chief")
            or (task_type == "worker" and task_id == 0 and not has_chief))


def describe(strategy: tf.distribute.Strategy, *, strategy_name: str,
             precision: str, mixed_precision: str, xla: bool,
             jit_compile: bool | str) -> str:
    """One line: the devices, the strategy and its replicas, the precision
    and XLA, e.g. "Device: CPU (no GPU found); default strategy with 1
    replica(s); precision float32 (--mixed_precision=auto); XLA on
    (--jit_compile=auto)."

    Args:
        strategy: The run's strategy.
        strategy_name: Its --strategy name.
        precision: The mixed-precision policy the model computes in
            ("none" for float32), --mixed_precision resolved.
        mixed_precision: --mixed_precision as given.
        xla: Whether the training step is XLA-compiled.
        jit_compile: --jit_compile as given.
    """
    gpus = collections.Counter(
        tf.config.experimental.get_device_details(gpu).get("device_name")
        or gpu.name for gpu in tf.config.list_physical_devices("GPU"))
    device = (", ".join(f"{n} x {gpu}" if n > 1 else gpu
                        for gpu, n in gpus.items())
              or "CPU (no GPU found)")
    return (f"Device: {device}; {strategy_name} strategy with "
            f"{strategy.num_replicas_in_sync} replica(s); precision "
            f"{_PRECISION.get(precision, precision)} "
            f"(--mixed_precision={mixed_precision}); XLA "
            f"{'on' if xla else 'off'} (--jit_compile="
            f"{str(jit_compile).lower()}).")
