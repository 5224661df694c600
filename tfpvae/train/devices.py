"""Devices and tf.distribute strategies of a training run.

"default" trains on one device; "mirrored" replicates over all local GPUs,
or over the logical CPUs when there is none (`configure_cpu_devices`);
"multi_worker" is a `MultiWorkerMirroredStrategy` over the cluster in the
TF_CONFIG environment variable. Only the chief worker writes the model
directory (`is_chief`).
"""

from __future__ import annotations

import tensorflow as tf


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


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` ("default", "mirrored", "multi_worker").

    "mirrored" replicates over all local GPUs, or over all logical CPUs when
    there is no GPU (see `configure_cpu_devices`); "multi_worker" reads the
    cluster from the TF_CONFIG environment variable.
    """
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
