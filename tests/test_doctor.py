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


def test_the_screen_has_one_line_per_check_and_a_total(screen):
    code, out = screen
    lines = [line for line in out.splitlines() if line[:5].strip() in ("OK", "WARN", "FAIL")]
    assert {line[6:23].strip() for line in lines} >= NAMES
    assert out.rstrip().splitlines()[-1].endswith("OK") and " FAIL, " in out
    assert code == (1 if any(line.startswith("FAIL") for line in lines) else 0)


@pytest.mark.skipif(_has_cuda(), reason="this machine has a GPU")
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
