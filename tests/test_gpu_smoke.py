"""`benchmarks/gpu_smoke.sh` on a torch-only node, and the benchmarks on a checkout without ../shared.

The environment is real, not patched: tools/torch_only_env.py links torch, transformers,
sentence-transformers and hardaug's core (with what they require) from the test's own environment into a new
venv, without vLLM and CTranslate2. Linking, not `pip install`, because CI's fresh machine already has these
installed and a torch wheel is ~200 MB (CPU) to several GB (CUDA) to fetch again; a venv made with
--system-site-packages would see vLLM. The smoke run takes about 2-3 minutes on 2 cores (models ~70 s,
oof ~20 s, paraphrase ~20 s, filter ~20 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def torch_only_python(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    out = tmp_path_factory.mktemp("torch-only") / "venv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "torch_only_env.py"), str(out), "torch", "transformers",
         "sentence-transformers", "tokenizers", "--core"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    python = Path(result.stdout.strip())
    probe = "import importlib.util as u; print([m for m in ('vllm', 'ctranslate2', 'torch') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip() == "['torch']"
    return python


@pytest.mark.slow
def test_smoke_runs_the_torch_steps_and_skips_the_rest(torch_only_python, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PYTHON": str(torch_only_python), "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_smoke.sh")], capture_output=True, text=True, env=env, timeout=900
    )
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line[:4] in ("OK  ", "SKIP", "FAIL")}
    assert result.returncode == 0, result.stdout[-3000:]
    for name in ("data", "build-bert", "build-qwen2", "build-sbert", "oof-transformers", "compare-transformers",
                 "paraphrase-transformers", "filter-embedding"):  # fmt: skip
        assert lines[name].startswith("OK"), lines.get(name)
    assert "300 rows" in lines["oof-transformers"]
    for name, package in (("build-mbart-ct2", "ctranslate2"), ("backtranslate-ct2-float32", "ctranslate2"),
                          ("backtranslate-ct2-int8", "ctranslate2"), ("paraphrase-vllm-guided", "vllm")):  # fmt: skip
        assert lines[name].startswith("SKIP") and lines[name].endswith(f"skipped: {package} not installed")
    assert "every step that ran passed" in result.stdout


def test_the_gpu_benchmarks_need_no_shared_folder(tmp_path):
    """A copy of the tracked files with no ../shared beside it: the default data is the bundled sample, and
    bench_backtranslate --quick runs end to end (tiny model)."""
    pytest.importorskip("ctranslate2")
    copy = tmp_path / "checkout" / "hardaug"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    assert not (copy.parent / "shared").exists()
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    env.pop("HARDAUG_BENCH_DATA", None)
    code = "import bench_backtranslate as b, bench_ray_gpu as r; print(b.DATA); print(r.data_file('train.csv'))"
    defaults = subprocess.run(
        [sys.executable, "-c", code], cwd=copy / "benchmarks", capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert defaults == [str(copy / "engine" / "data" / "sample" / "train.csv")] * 2
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_backtranslate.py", "--quick", "--rows", "engine", "--out", str(tmp_path)],
        cwd=copy, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "backtranslate.json").is_file() or list(tmp_path.glob("*.json")), result.stdout[-2000:]
