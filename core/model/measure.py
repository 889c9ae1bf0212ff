"""Measuring a network: its parameters and its CPU throughput."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def param_count(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def measure_throughput(
    model: torch.nn.Module,
    input_size: int,
    *,
    batch_size: int = 32,
    warmup: int = 2,
    batches: int = 5,
    threads: int | None = None,
) -> dict[str, Any]:
    """CPU images per second of ``model`` on random ``batch_size`` x 3 x S x S batches.

    Runs under ``torch.inference_mode`` in eval mode on the CPU (the model is moved
    there); ``warmup`` batches are not timed. Returns ``images_per_s``, ``threads``
    (``torch.get_num_threads()`` during the run), ``batch_size``, ``batches``, ``seconds``.
    """
    import torch

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = model.to("cpu").eval()
        x = torch.randn(
            batch_size, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)
        )
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            t = time.perf_counter()
            for _ in range(batches):
                model(x)
            seconds = time.perf_counter() - t
        return {
            "images_per_s": batches * batch_size / seconds,
            "threads": torch.get_num_threads(),
            "batch_size": batch_size,
            "batches": batches,
            "seconds": round(seconds, 4),
        }
    finally:
        torch.set_num_threads(old_threads)
