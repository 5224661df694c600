"""--mixed_precision=auto: bfloat16 only where it is native and measured faster."""

import pytest

from tfpvae import hardware
from tfpvae import models
from tfpvae.config import TrainConfig


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has these CPU flags and GPU capabilities."""
    def set_machine(flags=(), gpus=()):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(hardware, "gpu_compute_capabilities",
                            lambda: list(gpus))
    return set_machine


@pytest.mark.parametrize("flags, gpus, batch, expected", [
    (("avx512f", "amx_bf16"), (), 1000, "mixed_bfloat16"),
    (("avx512f", "avx512_bf16"), (), 5000, "mixed_bfloat16"),
    (("avx512f", "amx_bf16"), (), 100, "none"),      # batch too small
    (("avx512f", "avx2"), (), 1000, "none"),          # emulated bfloat16
    ((), ((8, 0),), 1000, "mixed_bfloat16"),          # A100
    (("amx_bf16",), ((7, 5),), 1000, "none"),         # a T4 decides, not the CPU
    ((), ((8, 6), (7, 0)), 1000, "none"),             # every GPU must have it
])
def test_auto_picks_bfloat16_only_where_native_and_large(machine, flags, gpus,
                                                          batch, expected):
    machine(flags, gpus)
    assert hardware.resolve_mixed_precision("auto", batch) == expected
    for explicit in ("none", "mixed_bfloat16", "mixed_float16"):
        assert hardware.resolve_mixed_precision(explicit, batch) == explicit


def test_the_model_computes_in_the_resolved_precision(machine):
    machine(("amx_bf16",))
    config = TrainConfig(latent_dim=2, hidden_units=(8,), batch_size=1000)
    assert models.build_model(config, (6,)).get_config()["dtype_policy"] \
        == "mixed_bfloat16"
    small = models.build_model(config.replace(batch_size=100), (6,))
    assert small.get_config()["dtype_policy"] is None
    machine(("avx2",))
    assert models.build_model(config, (6,)).get_config()["dtype_policy"] is None


def test_this_machine_is_read():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    assert isinstance(hardware.native_bfloat16(), bool)
