import torch

from mrl import precision


def test_cpu_bf16_follows_the_native_flags(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert precision.bf16_pays("cpu") is False
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.bf16_pays("cpu") is True
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert precision.bf16_pays(torch.device("cpu")) is True


def test_cuda_without_a_gpu_and_other_devices_say_no(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.bf16_pays("cuda") is False
    assert precision.bf16_pays("meta") is False
