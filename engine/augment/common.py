"""What every augmenter shares: reading the sources, the augmented schema, and resumable output.

Augmented rows (one per kept generated text):
- `id`: `{source_id}:{method}:{variant}`, deterministic, so a resumed run writes the same ids
- `source_id`, `label` (the source's), `hardness` (the source's, null when the input has none)
- `text`: the generated text
- `method`: backtranslate | paraphrase | eda; `model`: model path or name; `params`: JSON of the options
  that produced the row (pivot language, temperature, prompt version, ...); `variant`: a short tag that is
  unique per source and method (e.g. `en_XX.0`); `round`: augmentation round (1 for a first pass)
- `extra`: JSON of method-specific details kept for inspection (the pivot text of a back-translation)

Resumability: the engine processes sources in chunks; each finished chunk is saved under
`.<out name>.parts/` with every row it produced, kept or dropped (with `drop_reason`), so a restart skips
every source already seen and the drop counts survive restarts. `finish` writes the final file (kept rows,
in input order) atomically, writes the drop counts beside it, then `.<out name>.job.json` with the job's
fingerprint, and removes the parts. Run again, the same job finds its finished output (`finished()`) and
is not redone; another job, or `restart`, writes it anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.io import read_table, write_json, write_parquet, write_text
from engine.labels import LABEL_MAP_FILE, saved_classes
from engine.validate import prepare_dataset

log = logging.getLogger(__name__)

AUGMENTED_SCHEMA = {
    "id": pl.String,
    "source_id": pl.String,
    "text": pl.String,
    "label": pl.Int64,
    "method": pl.String,
    "model": pl.String,
    "params": pl.String,
    "variant": pl.String,
    "round": pl.Int64,
    "hardness": pl.Float64,
    "extra": pl.String,
}
PART_SCHEMA = {**AUGMENTED_SCHEMA, "source_order": pl.Int64, "drop_reason": pl.String}


@dataclass(frozen=True)
class ChunkDone:
    """Progress after one saved chunk of a chunked augmenter (backtranslate, paraphrase), what `on_chunk`
    receives: this chunk's sources, generated `outputs` (round trips, answers) and output tokens, its seconds,
    and the sources done so far of the job's `total`."""

    sources: int
    outputs: int
    output_tokens: int
    seconds: float
    done: int
    total: int


def load_sources(
    path: str | Path, *, text_col: str = "text", label_col: str = "label", id_col: str = "id"
) -> pl.DataFrame:
    """Read the texts to augment (hard.parquet from `hardaug mine`, or any dataset with id/text/label).

    Returns `id` (as String), `text`, `label`, `hardness` (null when absent) and `source_order`.
    String labels are mapped with the label map saved with the file (`source_classes`), never by sorting
    the names this file happens to hold: a file with two of four classes would renumber them.
    """
    path = Path(path)
    raw = read_table(path)
    saved = saved_classes(path)
    if saved is None and label_col in raw.columns and raw.schema[label_col] in (pl.String, pl.Categorical):
        raise InputError(
            f"{path}: the labels in {label_col!r} are names ({raw[label_col].unique().sort().head(5).to_list()}) "
            "but no label map says which class id each name is. Augment hard.parquet from hardaug mine (its "
            f"label map travels with it), or put a {LABEL_MAP_FILE} beside the file: "
            '{"classes": ["name of class 0", "name of class 1", ...]} with the training set\'s classes.'
        )
    frame, _ = prepare_dataset(
        raw,
        source=str(path),
        text_col=text_col,
        label_col=label_col,
        id_col=id_col,
        label_names=saved[0] if saved else None,
        num_classes=len(saved[0]) if saved else None,
        map_source=saved[1] if saved else None,
    )
    hardness = pl.col("hardness").cast(pl.Float64) if "hardness" in frame.columns else pl.lit(None, dtype=pl.Float64)
    return frame.select(
        pl.col("id").cast(pl.String),
        "text",
        "label",
        hardness.alias("hardness"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_order"),
    )


def classes_of(path: str | Path) -> list[str] | None:
    """The label map saved with a sources file (engine.labels), carried on to its augmented rows."""
    saved = saved_classes(path)
    return saved[0] if saved else None


def params_json(params: dict) -> str:
    return json.dumps(params, ensure_ascii=False, sort_keys=True)


def job_fingerprint(sources: pl.DataFrame, method: str, model: str, params: dict) -> str:
    digest = hashlib.sha256(params_json({"method": method, "model": model, "params": params}).encode())
    digest.update(sources.select("id", "text", "label").hash_rows(seed=11).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Generated:
    """One generated text for one source, before schema and filtering."""

    source_index: int  # row of the sources frame
    variant: str
    text: str
    extra: dict | None = None
    drop_reason: str | None = None  # set by the engine for drops only it can judge (e.g. "too_short")


def check_output(out: str | Path) -> Path:
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; pass a file name such as {out / 'augmented.parquet'}.")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"--out {out}: augmented rows are written as Parquet; use a .parquet file name.")
    return out


class AugmentedOutput:
    """Chunked, resumable output of one augmentation job; see the module docstring."""

    def __init__(
        self, out: str | Path, *, fingerprint: str, restart: bool = False, classes: list[str] | None = None
    ) -> None:
        self.out = check_output(out)
        self.fingerprint = fingerprint
        self.classes = classes  # the sources' label map, written into the output's metadata
        self.parts = self.out.with_name(f".{self.out.name}.parts")
        self.drops = self.out.with_suffix(".drops.json")
        self.job = self.out.with_name(f".{self.out.name}.job.json")
        self.manifest = manifest = self.parts / "manifest.json"
        if restart:
            shutil.rmtree(self.parts, ignore_errors=True)
            self.job.unlink(missing_ok=True)
        self._chunks: list[Path] = []
        if self._complete():
            return
        if manifest.exists():
            found = json.loads(manifest.read_text())["fingerprint"]
            if found != fingerprint:
                raise InputError(
                    f"{self.parts} holds chunks of a different job (input, model or options changed). "
                    "Pass --restart to discard them, or choose another --out."
                )
        self._chunks = sorted(self.parts.glob("chunk_*.parquet"))

    def _complete(self) -> bool:
        """This very job ran to the end here: its marker (written last) names this fingerprint."""
        if not (self.out.is_file() and self.drops.is_file() and self.job.is_file()):
            return False
        try:
            return json.loads(self.job.read_text())["fingerprint"] == self.fingerprint
        except (OSError, ValueError, KeyError, TypeError):
            return False  # unreadable marker: the job runs again and rewrites it

    def finished(self) -> tuple[pl.DataFrame, dict[str, int]] | None:
        """The kept rows and drop counts of this very job if it already ran to the end here, else None."""
        if not self._complete():
            return None
        log.info(
            "%s already holds this job's output from an earlier run: nothing to do (--restart redoes it)", self.out
        )
        return pl.read_parquet(self.out), json.loads(self.drops.read_text())

    def done_sources(self) -> set[str]:
        """Source ids already processed (whatever their outputs), to skip on restart."""
        if not self._chunks:
            return set()
        return set(pl.scan_parquet(self._chunks).select("source_id").unique().collect()["source_id"])

    def write_chunk(self, rows: pl.DataFrame, processed: Sequence[str]) -> None:
        """Save one finished chunk. `processed` lists every source id of the chunk, so sources whose
        outputs were all dropped (or that were skipped) are remembered too."""
        seen = set(rows["source_id"].to_list())
        markers = pl.DataFrame(
            {"source_id": [s for s in processed if s not in seen], "drop_reason": "(processed)"},
            schema={"source_id": pl.String, "drop_reason": pl.String},
        )
        chunk = pl.concat([rows.select(PART_SCHEMA.keys()).cast(PART_SCHEMA), markers], how="diagonal_relaxed")
        if not self.manifest.exists():  # made with the first chunk: a run that fails to start leaves nothing
            self.parts.mkdir(parents=True, exist_ok=True)
            write_text(json.dumps({"fingerprint": self.fingerprint}) + "\n", self.manifest)
        path = self.parts / f"chunk_{len(self._chunks):05d}.parquet"
        write_parquet(chunk, path)
        self._chunks.append(path)

    def finish(self) -> tuple[pl.DataFrame, dict[str, int]]:
        """Write the kept rows (input order, then the order the augmenter made them) and the drop counts;
        remove the parts."""
        every = (
            pl.read_parquet(self._chunks).filter(pl.col("drop_reason").ne_missing("(processed)"))
            if self._chunks
            else pl.DataFrame(schema=PART_SCHEMA)
        )
        counts = {
            "generated": every.height,
            **{
                r["drop_reason"]: r["len"]
                for r in every.filter(pl.col("drop_reason").is_not_null())
                .group_by("drop_reason")
                .len()
                .sort("drop_reason")
                .iter_rows(named=True)
            },
        }
        kept = (
            every.filter(pl.col("drop_reason").is_null())
            # a stable sort on the source alone: sorting by the variant tag would put "10" before "2"
            .sort("source_order", maintain_order=True)
            .select(AUGMENTED_SCHEMA.keys())
        )
        counts["kept"] = kept.height
        self.job.unlink(missing_ok=True)  # an older job's marker must not outlive its output
        write_parquet(kept, self.out, classes=self.classes)
        write_json(counts, self.drops)
        write_json({"fingerprint": self.fingerprint}, self.job)  # last: the output is complete
        shutil.rmtree(self.parts, ignore_errors=True)
        return kept, counts


def chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


def to_rows(
    sources: pl.DataFrame,
    generated: Sequence[Generated],
    *,
    method: str,
    model: str,
    params: dict,
    round_: int = 1,
) -> pl.DataFrame:
    """Rows in PART_SCHEMA with the cheap drops applied: empty output, output identical to the source."""
    src = sources.to_dicts()
    records = []
    for g in generated:
        s = src[g.source_index]
        text = g.text.strip()
        reason = g.drop_reason or (
            "empty" if not text else "identical_to_source" if text == s["text"].strip() else None
        )
        records.append(
            {
                "id": f"{s['id']}:{method}:{g.variant}",
                "source_id": s["id"],
                "text": text,
                "label": s["label"],
                "method": method,
                "model": model,
                "params": params_json(params),
                "variant": g.variant,
                "round": round_,
                "hardness": s["hardness"],
                "extra": params_json(g.extra) if g.extra else None,
                "source_order": s["source_order"],
                "drop_reason": reason,
            }
        )
    return pl.DataFrame(records, schema=PART_SCHEMA)
