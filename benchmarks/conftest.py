"""pytest-benchmark setup for the regression gate (see harness/analysis/regress.py and README, "The regression gate").

* Storage is keyed by GPU model and driver: unless ``--benchmark-storage`` is given, results go to
  ``results/benchmarks/<gpu-model>-<driver>/<machine id>/`` (pytest-benchmark's own machine id only
  names OS and Python, so two GPUs would otherwise share one baseline).
* ``machine_info`` in every saved JSON records GPU, driver, CUDA, torch and package versions.
* Skipped cells (backend unavailable or unsupported) are listed in the saved JSON under
  ``flashcore.skipped`` with their reasons, so the gate can say why a baseline cell is missing.
"""
from __future__ import annotations

import os

import pytest

from harness.analysis import regress

DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's default
_cells: list[str] = []
_skipped: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # runs before pytest-benchmark's own (trylast) pytest_configure opens the storage
    if getattr(config.option, "benchmark_storage", None) == DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{regress.storage_dir()}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"flashcore benchmarks: storage {config.getoption('benchmark_storage')}"]
    slow = os.environ.get(regress.SLOWDOWN_ENV, "")
    if slow:
        lines.append(f"flashcore benchmarks: TEST HOOK {regress.SLOWDOWN_ENV}={slow!r} is active "
                     "(extra work: these numbers are not measurements)")
    return lines


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torch

    from harness.measure import environment
    smi = regress.nvidia_smi_gpu()
    info: dict = {
        "gpu": "none (CPU)",
        "driver": smi[1] if smi else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "packages": environment.versions(),
        "storage_slug": regress.machine_slug(),
    }  # the commit is in the JSON's commit_info; machine_info must stay equal between runs of one machine
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    sm_count=props.multi_processor_count, cudnn=torch.backends.cudnn.version())
    machine_info.update(info)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _cells[:] = [it.nodeid for it in items if "benchmark" in getattr(it, "fixturenames", ())]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid in _cells:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped[report.nodeid] = str(reason).removeprefix("Skipped: ")


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    output_json["flashcore"] = {
        "cells": list(_cells),
        "skipped": [{"fullname": k, "reason": v} for k, v in _skipped.items()],
        "slowdown": os.environ.get(regress.SLOWDOWN_ENV, ""),
    }
