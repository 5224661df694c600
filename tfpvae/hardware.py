"""What the machine computes fast: the numeric precision `auto` picks.

`--mixed_precision=auto` (the default) computes the networks in bfloat16
where the hardware does so natively and the batch is large enough that it
was measured faster, and in float32 everywhere else; the distributions, the
bounds and the evaluation always compute in float32:

* a GPU of compute capability 8.0 or more (Ampere and later) has bfloat16
  tensor cores;
* a CPU with AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`) multiplies
  bfloat16 natively through oneDNN; without them TensorFlow emulates
  bfloat16, which is slower than float32.

On the CPUs with AMX that tools/benchmark.py measured (docs/performance.md),
bfloat16 without XLA trained the MLP 784-500-500-20 at 1.9x the float32
speed with a batch of 1000; at smaller batches the casts cost about what the
matmuls save, so `BFLOAT16_MIN_BATCH` keeps float32 there.
"""

from __future__ import annotations

import functools

import tensorflow as tf

#: The smallest (global) batch at which `auto` picks bfloat16.
BFLOAT16_MIN_BATCH = 1000

#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix arithmetic.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """The compute capability (major, minor) of each visible GPU."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability"):
            capabilities.append(tuple(details["compute_capability"]))
    return capabilities


def native_bfloat16() -> bool:
    """Whether the devices TensorFlow will use compute bfloat16 natively:
    every GPU with compute capability >= 8.0, or, without a GPU, a CPU with
    one of `CPU_BFLOAT16_FLAGS`."""
    capabilities = gpu_compute_capabilities()
    if capabilities:
        return all(major >= 8 for major, _ in capabilities)
    return bool(cpu_flags() & set(CPU_BFLOAT16_FLAGS))


def resolve_mixed_precision(setting: str, batch_size: int) -> str:
    """The --mixed_precision to use: `setting`, with "auto" resolved to
    "mixed_bfloat16" (native bfloat16 and a batch of at least
    `BFLOAT16_MIN_BATCH`) or "none"."""
    if setting != "auto":
        return setting
    if native_bfloat16() and batch_size >= BFLOAT16_MIN_BATCH:
        return "mixed_bfloat16"
    return "none"
