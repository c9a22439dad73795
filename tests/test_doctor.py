"""`hardaug doctor` on this machine: every engine checked for real, structure and exit codes, and on a
machine without a GPU every CUDA line says so plainly instead of crashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"python", "packages", "torch cuda", "ctranslate2", "ctranslate2 cuda", "cublas 12", "vllm", "cache", "hub"}


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _doctor(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "doctor", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def screen() -> tuple[int, str]:
    result = _doctor()
    return result.returncode, result.stdout


@pytest.fixture(scope="module")
def as_json() -> tuple[int, dict]:
    result = _doctor("--json", "--gpu")
    return result.returncode, json.loads(result.stdout)


@pytest.mark.slow
def test_the_screen_has_one_line_per_check_and_a_total(screen):
    code, out = screen
    lines = [line for line in out.splitlines() if line[:5].strip() in ("OK", "WARN", "FAIL")]
    assert {line[6:23].strip() for line in lines} >= NAMES
    assert out.rstrip().splitlines()[-1].endswith("OK") and " FAIL, " in out
    assert code == (1 if any(line.startswith("FAIL") for line in lines) else 0)


@pytest.mark.skipif(_has_cuda(), reason="this machine has a GPU")
@pytest.mark.slow
def test_without_a_gpu_the_cuda_lines_say_so_and_only_warn(screen):
    code, out = screen
    by_name = {}
    for line in out.splitlines():
        if line[:5].strip() in ("OK", "WARN", "FAIL"):
            by_name.setdefault(line[6:23].strip(), []).append(line)
    assert by_name["torch cuda"][0].startswith("WARN") and "no CUDA device" in by_name["torch cuda"][0]
    assert by_name["ctranslate2 cuda"][0].startswith("WARN") and "no CUDA device" in by_name["ctranslate2 cuda"][0]
    assert "needed only with --device cuda" in " ".join(by_name["cublas 12"])
    assert not any(line.startswith("FAIL") for lines in by_name.values() for line in lines), out
    assert code == 0


@pytest.mark.slow
def test_json_has_the_same_checks_and_gpu_mode_fails_without_a_gpu(as_json):
    code, report = as_json
    assert set(report) == {"ok", "checks"}
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])
    assert {c["status"] for c in report["checks"]} <= {"OK", "WARN", "FAIL"}
    assert {c["name"] for c in report["checks"]} >= NAMES
    assert report["ok"] == (code == 0) == all(c["status"] != "FAIL" for c in report["checks"])
    hub = next(c for c in report["checks"] if c["name"] == "hub")
    assert "offline mode" in hub["detail"]  # conftest sets HF_HUB_OFFLINE: no network was tried
    if not _has_cuda():
        torch_line = next(c for c in report["checks"] if c["name"] == "torch cuda")
        assert torch_line["status"] == "FAIL" and torch_line["fix"]  # --gpu: a GPU node without a GPU
        assert code == 1


def test_the_cli_imports_nothing_heavy():
    code = "import sys, engine.cli; engine.cli.build_parser(); print(sorted({'torch', 'vllm'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_doctor_help_runs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out


CACHE_VARS = ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "VLLM_CACHE_ROOT", "XDG_CACHE_HOME")


def _cache_checks(env: dict) -> dict[str, dict]:
    """The cache lines of a fresh process (huggingface_hub reads HF_HOME at import), by variable name."""
    code = (
        "import json, dataclasses, engine.doctor as d; print(json.dumps([*map(dataclasses.asdict, d.check_caches())]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return {c["detail"].split("=", 1)[0]: c for c in json.loads(result.stdout)}


def test_caches_in_the_home_folder_warn_with_the_make_fix(tmp_path):
    """Outside `make` (no cache variables set) the engines' caches land in ~/.cache: WARN and say what `make`
    exports; with the project-local folders `make` sets, the same lines are OK."""
    bare = {k: v for k, v in os.environ.items() if k not in CACHE_VARS} | {
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    home = _cache_checks(bare)
    for name, sub in (("HF_HOME", "huggingface"), ("TORCH_HOME", "torch"), ("VLLM_CACHE_ROOT", "vllm")):
        assert home[name]["status"] == "WARN" and "home folder" in home[name]["detail"]
        assert f"export {name}={ROOT / '.cache' / sub}" in home[name]["fix"]
    assert home["HF_HUB_CACHE"]["status"] == "WARN" and "HF_HOME=" in home["HF_HUB_CACHE"]["fix"]
    assert home["TMPDIR"]["status"] == "OK"

    local = bare | {name: str(ROOT / ".cache" / sub) for name, sub in (("HF_HOME", "hf"), ("TORCH_HOME", "torch"))}
    local["VLLM_CACHE_ROOT"] = str(ROOT / ".cache" / "vllm")
    project = _cache_checks(local)
    assert all("home folder" not in project[name]["detail"] for name in CACHE_VARS[:4]), project
    assert project["HF_HUB_CACHE"]["detail"].startswith(f"HF_HUB_CACHE={ROOT / '.cache' / 'hf' / 'hub'}")


# ------------------------------------------------------------------ the GPU lines, from stubbed probe results
# No GPU here: these feed the parsers what the probes return on a GPU node and check the lines they make.
from engine import doctor as d  # noqa: E402
from engine.cuda_libs import describe_source, mapped_files  # noqa: E402


def test_the_driver_version_is_read_from_the_kernel_module_text():
    text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version: gcc"
    assert d.parse_proc_driver(text) == "550.54.15"
    assert d.parse_proc_driver("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release") == (
        "580.65.06"
    )
    assert d.parse_proc_driver("no module") is None


def test_a_driver_older_than_580_fails_for_cuda_13_with_both_fixes():
    old = d.driver_check("550.54.15", "13.0", "2.13.0+cu130")
    assert old.status == d.FAIL and "550.54.15" in old.detail and "CUDA 13.0" in old.detail and "580" in old.detail
    assert "driver 580 or newer" in old.fix and "forward-compatibility" in old.fix and "cuda-compat-13-0" in old.fix
    assert d.driver_check("580.65.06", "13.0", "2.13.0").status == d.OK
    assert d.driver_check("550.54.15", "12.8", "2.7.0").status == d.OK  # CUDA 12 needs 525
    assert d.driver_check("550.54.15", "14.0", "3.0") is None  # a CUDA major this table does not know


def test_compute_capability_9_and_above_warns_that_ctranslate2_compiles_its_kernels():
    pytest.importorskip("ctranslate2")
    h100 = d.ct2_jit_check(0, "NVIDIA H100 80GB HBM3", 9, 0)
    assert h100.status == d.WARN and "compute capability 9.0" in h100.detail and "sm_86" in h100.detail
    assert "CUDA_CACHE_PATH=" in h100.fix and f"CUDA_CACHE_MAXSIZE={4 * 2**30}" in h100.fix
    assert d.ct2_jit_check(0, "NVIDIA A100", 8, 0) is None and d.ct2_jit_check(0, "RTX 3090", 8, 6) is None
    assert d.gpu_check(0, "NVIDIA H200", 9, 0, 130 * d.GIB, 140 * d.GIB).status == d.OK
    assert d.gpu_check(0, "NVIDIA H200", 9, 0, 10 * d.GIB, 140 * d.GIB).status == d.WARN


MAPS = """\
7f1c00000000-7f1c00200000 r--p 00000000 08:01 1234 /venv/lib/python3/site-packages/nvidia/cublas/lib/libcublas.so.12
7f1c00200000-7f1c00400000 r-xp 00200000 08:01 1234 /venv/lib/python3/site-packages/nvidia/cublas/lib/libcublas.so.12
7f1c01000000-7f1c01200000 r--p 00000000 08:01 1235 /venv/lib/python3/site-packages/nvidia/cublas/lib/libcublasLt.so.12
7f1c02000000-7f1c02001000 rw-p 00000000 00:00 0
7f1c03000000-7f1c03200000 r--p 00000000 08:01 99 /usr/local/cuda-13.0/lib64/libcublas.so.13.0.2.14
"""


def test_the_cublas_line_names_the_file_the_process_mapped():
    wheel = "/venv/lib/python3/site-packages/nvidia/cublas/lib/libcublas.so.12"
    assert mapped_files("libcublas.so.12", MAPS) == [wheel]  # once, though mapped in two segments
    line = d.cublas_check(mapped_files("libcublas.so.12", MAPS), [])
    assert line.status == d.OK and line.detail == f"libcublas.so.12 loaded from the nvidia-cublas-cu12 wheel ({wheel})"
    system = "/usr/local/cuda-12.4/targets/x86_64-linux/lib/libcublas.so.12.4.5.8"
    assert describe_source(system, []) == f"the system ({system})"
    two = d.cublas_check([wheel, system], [])
    assert two.status == d.WARN and system in two.detail and two.fix
    assert "on the library path" not in line.detail


def test_two_distributions_installing_the_triton_module_fail():
    files = {
        "triton": ["triton/__init__.py", "triton/language/core.py", "triton-3.7.1.dist-info/RECORD"],
        "tokenspeed-triton": ["triton/__init__.py", "tokenspeed_triton-3.9.10.dist-info/RECORD"],
    }
    versions = {"triton": "3.7.1", "tokenspeed-triton": "3.9.10.post20261028"}
    owners = d.module_owners(files, "triton")
    assert owners == ["tokenspeed-triton", "triton"]
    clash = d.triton_check(versions, owners, "3.9.10")
    assert clash.status == d.FAIL and "both install the triton module" in clash.detail and "triton==" in clash.fix
    separate = {"triton": files["triton"], "tokenspeed-triton": ["tokenspeed_triton/__init__.py"]}
    assert d.triton_check(versions, d.module_owners(separate, "triton"), "3.7.1").status == d.OK
    assert d.triton_check(versions, ["triton"], "3.9.10").status == d.FAIL  # not the version torch pins
    broken = d.triton_check(versions, ["triton"], None, "ImportError: libtriton.so")
    assert broken.status == d.FAIL and "libtriton.so" in broken.detail
