"""Which CUDA targets this machine can run, and the reasons it cannot, for visible skips."""

import pytest

from convgen.runtime import gpu, pocl


def cuda_kernels(target: str, items, dtype: str):
    """Every entry point of ``items`` on ``target`` (``cuda-cpu`` or ``cuda``), or a skip
    that says why the target is unavailable here."""
    if target == "cuda":
        reason = gpu.available()
        if reason:
            pytest.skip(f"no GPU run: {reason}")
        return gpu.compile_gpu(items, dtype)
    reason = pocl.available("pocl")
    if reason:
        pytest.skip(f"no CUDA-on-CPU run: {reason}")
    return pocl.compile_cpu(items, dtype)
