"""Shared test setup: GPU tests skip with a reason where no CUDA GPU is visible."""
from __future__ import annotations

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible); run on a Hopper GPU (H100/H200)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
