"""Whether bf16 autocast speeds a device up, so benchmarks and defaults only turn it on where it pays."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

# CPU flags of native bfloat16 arithmetic. Without them PyTorch emulates bf16 matmuls: on the project's
# AVX2-only 2-core machine, encoding with all-MiniLM-L6-v2 under bf16 autocast took 6.4x as long as fp32 (benchmarks/bf16_speed.py).
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, so no claim of native bf16
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_pays(device: str | torch.device) -> bool:
    """True when bf16 autocast is native on ``device``: a CUDA GPU that supports bfloat16, or a CPU
    with AVX-512 BF16 or AMX-BF16. Elsewhere fp32 is the faster choice."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return any(flag in _cpu_flags() for flag in _CPU_BF16_FLAGS)
    return False
