"""Build random-weight models of real architectures (no downloads) and convert them for the engines.

One subcommand per architecture; each writes OUT/hf (a Hugging Face folder that transformers loads like a
real checkpoint) and, unless --no-convert, the engine's own format beside it:

    python tools/make_random_model.py mbart tiny models/mbart-tiny             # seconds: tests
    python tools/make_random_model.py mbart base models/mbart-base             # d512 6+6, 250,054 vocab: CPU benchmark
    python tools/make_random_model.py mbart large models/mbart-large-50 \\
        --dtype float16 --device cuda --quantization int8_float16              # the real mbart-large-50 shape

`mbart` writes OUT/ct2 (CTranslate2, checked by `convert_mbart`) for `hardaug backtranslate --model OUT/ct2`.
Random weights give gibberish: use these models for speed, memory and contracts, never for quality.
To add an architecture, add a `_register_<name>` function that adds a subparser with its own `func`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _register_mbart(sub: argparse._SubParsersAction) -> None:
    from engine.augment.convert_mbart import QUANTIZATIONS
    from engine.random_models.mbart import SHAPES

    shapes = ", ".join(
        f"{name} (d{s.d_model}, {s.encoder_layers}+{s.decoder_layers} layers)" for name, s in SHAPES.items()
    )
    p = sub.add_parser("mbart", help="mBART-50 (many-to-many) for back-translation", description=f"shapes: {shapes}")
    p.add_argument("shape", choices=sorted(SHAPES), help="tiny = tests, base = CPU benchmark, large = the real shape")
    p.add_argument("out", type=Path, help="output folder: OUT/hf and OUT/ct2 are written")
    p.add_argument("--seed", type=int, default=0, help="weight initialization seed (default: 0)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="stored weight type of OUT/hf (float16 halves the large shape's 2.4 GB; default: float32)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to initialize the weights")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="int8",
        help="CTranslate2 weight type of OUT/ct2 (default: int8; int8_float16 for GPUs)",
    )
    p.add_argument("--no-convert", action="store_true", help="write OUT/hf only")
    p.add_argument("--force", action="store_true", help="replace OUT/hf and OUT/ct2 if they exist")
    p.set_defaults(func=_make_mbart)


def _make_mbart(args: argparse.Namespace) -> dict:
    import shutil

    from engine.augment.convert_mbart import convert_mbart
    from engine.random_models.mbart import SHAPES, build_random_mbart, count_parameters

    hf, ct2 = args.out / "hf", args.out / "ct2"
    for path in (hf, ct2):
        if path.exists() and any(path.iterdir()):
            if not args.force:
                raise SystemExit(f"{path} exists; pass --force to replace it")
            shutil.rmtree(path)
    started = time.perf_counter()
    build_random_mbart(hf, args.shape, seed=args.seed, dtype=args.dtype, device=args.device)
    shape = SHAPES[args.shape]
    built = time.perf_counter()
    record = {
        "architecture": "mbart",
        "shape": args.shape,
        **{k: getattr(shape, k) for k in shape.__dataclass_fields__},
        "vocab_size": json.loads((hf / "config.json").read_text())["vocab_size"],
        "seed": args.seed,
        "dtype": args.dtype,
        "hf": str(hf),
        "build_seconds": round(built - started, 1),
    }
    record["parameters"] = count_parameters(shape, record["vocab_size"])
    if not args.no_convert:
        convert_mbart(hf, ct2, quantization=args.quantization, force=True)
        record.update(
            ct2=str(ct2), quantization=args.quantization, convert_seconds=round(time.perf_counter() - built, 1)
        )
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="architecture", required=True, metavar="ARCHITECTURE")
    _register_mbart(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    record = args.func(args)
    (args.out / "random_model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
