"""How ``precision`` and ``memory_format`` left at ``auto`` resolve for the models that
train: for models with enough matrix work, bf16 in channels_last on a CPU with AMX and
bf16 contiguous on one with AVX512-BF16 alone; fp32 otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.losses import cross_entropy_loss
from kdsweep_builtins.models import build_cnn

from kdsweep.study.settings import TrainSettings
from kdsweep.train import costs, device, fit

DATA = load_digits()
SAMPLE = DATA.train_x[:1]
AUTO = TrainSettings(epochs=1, batch_size=64)
CPU_FLAGS = Path("/proc/cpuinfo")


def _cnn(width: int) -> torch.nn.Module:
    return build_cnn(width, 10, DATA.input_shape)


def _cpu_flags() -> list[str]:
    if not CPU_FLAGS.exists():
        pytest.skip("no /proc/cpuinfo here")
    return CPU_FLAGS.read_text().split()


def test_amx_is_reported_as_the_cpu_flags_say() -> None:
    assert device.cpu_has_amx() == ("amx_tile" in _cpu_flags())


def test_the_bf16_choice_follows_the_cpu_flags() -> None:
    """AMX: bf16 in channels_last; AVX512-BF16 alone: bf16, contiguous (channels_last's
    convolution backward corrupted the heap on such a CPU); neither: fp32."""
    flags = _cpu_flags()
    expected = None
    if "amx_tile" in flags:
        expected = {"precision": "bf16", "memory_format": "channels_last"}
    elif "avx512_bf16" in flags:
        expected = {"precision": "bf16", "memory_format": "contiguous"}
    assert device.cpu_bf16_choice() == expected


def test_matrix_flops_count_the_convolutions_and_the_head() -> None:
    width = 4
    expected = 2 * (64 * width * 9 + 64 * 2 * width * width * 9 + 16 * 4 * width * width * 9)
    expected += 2 * 2 * width * 10  # the linear head
    assert costs.matrix_flops_per_sample(_cnn(width), SAMPLE) == expected
    assert costs.flops_per_sample(_cnn(width), SAMPLE) == expected


def test_auto_is_this_cpus_bf16_choice_for_wide_models_only() -> None:
    chosen = device.cpu_bf16_choice()
    if chosen is None:
        pytest.skip("this CPU has no bf16 instructions: auto stays fp32 (checked below)")
    wide = device.resolve_auto(AUTO, [_cnn(32)], SAMPLE)
    assert (wide.precision, wide.memory_format) == (chosen["precision"], chosen["memory_format"])
    narrow = [_cnn(4)]
    assert device.resolve_auto(AUTO, narrow, SAMPLE) == AUTO  # per-operator bound: fp32
    # A fused group trains as its members would alone: per model, not summed.
    assert device.resolve_auto(AUTO, [_cnn(8) for _ in range(8)], SAMPLE) == AUTO
    assert device.resolve_auto(AUTO, [_cnn(32) for _ in range(2)], SAMPLE).precision == "bf16"


def test_auto_stays_fp32_without_bf16_and_explicit_choices_stand() -> None:
    wide = [_cnn(32)]
    chosen = device.cpu_bf16_choice()
    if chosen is None:
        assert device.resolve_auto(AUTO, wide, SAMPLE) == AUTO
    pinned = dataclasses.replace(AUTO, precision="fp32", memory_format="contiguous")
    assert device.resolve_auto(pinned, wide, SAMPLE) == pinned
    half = dataclasses.replace(AUTO, precision="fp32")
    resolved = device.resolve_auto(half, wide, SAMPLE)
    assert resolved.precision == "fp32"
    assert resolved.memory_format == (chosen["memory_format"] if chosen else "auto")


def test_a_wide_model_trained_under_auto_learns_as_in_fp32() -> None:
    """The teacher-sized cnn, 3 epochs under ``auto`` (bf16 on a CPU with bf16
    instructions) and in fp32:
    both learn the digits, within a few points of each other."""
    accuracies = []
    for precision in ("auto", "fp32"):
        model = fit.build_seeded(lambda: _cnn(32), 0, torch.device("cpu"))
        settings = TrainSettings(epochs=3, batch_size=64, lr=0.05, precision=precision)
        recipe = fit.Recipe(settings, fit.TrainingLoss.of(cross_entropy_loss))
        accuracies.append(fit.fit(model, DATA, recipe).val_accuracy)
    assert min(accuracies) > 0.9
    assert abs(accuracies[0] - accuracies[1]) < 0.03
