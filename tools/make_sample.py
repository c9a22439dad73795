"""Build the bundled sample of nsmc4 that `make demo` runs on.

Stratified by label, fixed seed, so anyone can rebuild the exact files:

    python tools/make_sample.py --src ../shared/data/nsmc4 --out engine/data/sample
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl


def stratified_sample(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Draw about `n` rows keeping each label's share; rows keep their original order."""
    share = n / frame.height
    return (
        frame.with_row_index("_row")
        .filter(pl.int_range(pl.len()).shuffle(seed=seed).over("label") < (pl.len() * share).round().over("label"))
        .sort("_row")
        .drop("_row")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path("../shared/data/nsmc4"))
    parser.add_argument("--out", type=Path, default=Path("engine/data/sample"))
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--test-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.train_rows), ("test", args.test_rows)):
        frame = pl.read_csv(args.src / f"{split}.csv", schema_overrides={"id": pl.Int64, "text": pl.String})
        sample = stratified_sample(frame, n, args.seed)
        sample.write_csv(args.out / f"{split}.csv")
        counts = sample["label"].value_counts().sort("label")
        print(split, sample.height, dict(zip(counts["label"], counts["count"], strict=True)))


if __name__ == "__main__":
    main()
