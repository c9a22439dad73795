"""`hardaug doctor`: one screen that says whether this machine can run hardaug's engines, and what to fix."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check Python, the engines, CUDA, caches and hub access, and say what to fix",
        description="Check this machine for hardaug: Python and engine versions; CUDA devices and free memory "
        "seen by torch; CTranslate2's CUDA devices, compute types and CUDA 12 cuBLAS; vLLM's platform and its "
        "torch; cache folders; hub access or offline mode. Each line is OK, WARN or FAIL with the fix; the exit "
        "code is 1 when a line FAILs. Run it first on a new GPU node (with --gpu).",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON instead of the screen")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="this is a GPU node: a missing CUDA device, a CPU build or no CUDA 12 cuBLAS is a FAIL (default: WARN)",
    )
    p.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from engine.doctor import FAIL, as_json, run_checks

    checks = run_checks(gpu=args.gpu)
    if args.json:
        print(json.dumps(as_json(checks), indent=2))
    else:
        for c in checks:
            print(f"{c.status:<5} {c.name:<17} {c.detail}")
            if c.fix:
                print(f"{'':<5} {'':<17} fix: {c.fix}")
        failed = sum(c.status == FAIL for c in checks)
        warned = sum(c.status == "WARN" for c in checks)
        print(f"\n{failed} FAIL, {warned} WARN, {len(checks) - failed - warned} OK")
    return 1 if any(c.status == FAIL for c in checks) else 0
