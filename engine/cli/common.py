"""Argument types and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

# re-exported: the commands' types
from engine.options import comma_list, positive_float, positive_int, seed_list  # noqa: F401

SAMPLE_DIR = resources.files("engine") / "data" / "sample"


def drop_count_lines(counts: dict[str, int]) -> list[str]:
    """The augmenters' `.drops.json` counts as aligned lines: candidates, each drop reason, kept."""
    lines = [f"{'candidates':<24}{counts.get('generated', 0):>8,}"]
    lines += [
        f"  dropped: {reason:<14}{count:>8,}" for reason, count in counts.items() if reason not in ("generated", "kept")
    ]
    lines.append(f"{'kept':<24}{counts.get('kept', 0):>8,}")
    return lines


def add_source_options(p: argparse.ArgumentParser, method: str) -> None:
    """--input, --out and the column names, the same for every augmenter."""
    p.add_argument(
        "--input",
        type=Path,
        default=Path("runs/mine/hard.parquet"),
        help="sources: hard.parquet from `hardaug mine`, or any CSV/Parquet with id, text, label "
        "(default: runs/mine/hard.parquet)",
    )
    out = f"runs/{method}/augmented.parquet"
    p.add_argument("--out", type=Path, default=Path(out), help=f"output Parquet file (default: {out})")
    p.add_argument("--text-col", default="text", help="column with the texts (default: text)")
    p.add_argument("--label-col", default="label", help="column with the labels (default: label)")
    p.add_argument("--id-col", default="id", help="column with unique ids (default: id; row numbers if absent)")


def check_source_paths(args: argparse.Namespace) -> None:
    """Before any work: the augmenter's --out (and its .drops.json) must not be its --input, and its folder
    must be writable."""
    from engine.io import check_writable, refuse_overwrite

    out = Path(args.out)
    refuse_overwrite({"--out": out, "--out's drop counts": out.with_suffix(".drops.json")}, {"--input": args.input})
    check_writable(out.parent, option="--out")


class ChunkProgress:
    """`on_chunk` of the chunked augmenters (backtranslate, paraphrase): one progress bar over sources, which
    starts at the sources an earlier run finished, and the totals of this run for the closing summary.

    It reads `augment.common.ChunkDone` and `cluster.shards.ShardDone` (the same fields); `rate` renders a
    chunk's speed for the bar."""

    def __init__(self, desc: str, rate: Callable[[Any], str]) -> None:
        self.desc, self.rate = desc, rate
        self.outputs, self.tokens, self.seconds = 0, 0, 0.0
        self.bar = None

    def __call__(self, chunk: Any) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=chunk.total, initial=chunk.done - chunk.sources, desc=self.desc, unit="src")
        self.outputs += chunk.outputs
        self.tokens += chunk.output_tokens
        self.seconds += chunk.seconds
        self.bar.update(chunk.sources)
        self.bar.set_postfix_str(self.rate(chunk))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self, counts: dict[str, int], wall: float, work: Callable[[ChunkProgress], str]) -> str:
        """Drop counts, then what this run generated (`work(self)`) or that everything was done before."""
        lines = drop_count_lines(counts)
        if self.seconds > 0:
            lines.append(f"{work(self)}; {wall:.1f} s in all (model load included)")
        else:
            lines.append("every source was done by an earlier run: nothing generated (--restart redoes them)")
        return "\n".join(lines)
