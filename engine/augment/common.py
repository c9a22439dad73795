"""What every augmenter shares: reading the sources, the augmented schema, and the resumable job.

Augmented rows (one per kept generated text):
- `id`: `{source_id}:{method}:{variant}`, deterministic, so a resumed run writes the same ids
- `source_id`, `label` (the source's), `hardness` (the source's, null when the input has none)
- `text`: the generated text
- `method`: backtranslate | paraphrase | eda; `model`: model path or name; `params`: JSON of the options
  that produced the row (pivot language, temperature, prompt version, ...); `variant`: a short tag that is
  unique per source and method (e.g. `en_XX.0`); `round`: augmentation round (1 for a first pass)
- `extra`: JSON of method-specific details kept for inspection (the pivot text of a back-translation)

Resumability: `AugmentedOutput` is the job folder (engine.jobs) `.<out name>.job/` beside the output, held
locked while the job runs (a second run on the same `--out` is refused, naming the holder). The engine
processes sources in chunks (`augment_file` on an executor of engine.stage: here, or shards on Ray); each
finished chunk is saved as a verified part with every row it produced, kept or dropped (with
`drop_reason`), so a restart skips every source already seen and the drop counts survive restarts; a part
deleted, truncated or edited by hand is named and its sources are redone. Each part records the digest of
the source ids it was saved for (`sources_sha256`): a part that holds other sources (swapped for another,
its size and sha256 updated in the manifest) or sources another part holds too is named and redone, so
a source is never in the output twice; `finish` checks that the parts cover exactly the job's sources and
that the output's ids are unique before it writes anything. `finish` writes the final file
(kept rows, in input order) and the drop counts beside it (OUT with the suffix `.drops.json`:
`augmented.parquet` -> `augmented.drops.json`), then the done marker with both files' digests. Run again,
the same job finds its finished output (`finished()`) and is not redone; another job writes it anew, or,
while the first one's parts are still there, is refused unless `restart`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine import jobs
from engine.errors import InputError
from engine.io import check_output, read_table, write_json, write_parquet
from engine.labels import LABEL_MAP_FILE, saved_classes
from engine.progress import OnProgress, report
from engine.stage import ChunkJob, Executor, InProcess, Producer
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
PROCESSED = "(processed)"  # marker row of a source that was seen but left no row of its own


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
    """The identity of an augmentation job (engine.jobs.fingerprint): the sources' content (what the rows
    copy from them), the method, the model as named, the options and the hardaug version. The single-process
    job and the Ray shards compute the same one, so either can finish what the other started."""
    return jobs.fingerprint(
        "augment",
        {"method": method, "model": model, "params": params},
        {"sources": sources.select("id", "text", "label", "hardness")},
    )


@dataclass(frozen=True)
class Generated:
    """One generated text for one source, before schema and filtering."""

    source_index: int  # row of the sources frame
    variant: str
    text: str
    extra: dict | None = None
    drop_reason: str | None = None  # set by the engine for drops only it can judge (e.g. "too_short")


class AugmentedOutput:
    """The resumable output of one augmentation job (see the module docstring). A context manager: the job
    folder is locked from `__enter__` to `__exit__`, so hold it for the whole run.

    with AugmentedOutput(out, fingerprint=key) as output:
        if (found := output.finished()) is not None: return found
        ...output.write_chunk(rows, ids) for every chunk of sources not in output.done_sources()...
        return output.finish()
    """

    def __init__(
        self, out: str | Path, *, fingerprint: str, restart: bool = False, classes: list[str] | None = None
    ) -> None:
        self.out = check_output(out)
        self.fingerprint = fingerprint
        self.classes = classes  # the sources' label map, written into the output's metadata
        self.drops = self.out.with_suffix(".drops.json")
        self.folder = self.out.with_name(f".{self.out.name}.job")
        self.job = jobs.Job(
            self.folder, fingerprint, restart=restart, outputs=[self.out, self.drops], what="augmentation job"
        )
        self._processed: set[str] = set()  # source ids the verified parts hold

    def __enter__(self) -> AugmentedOutput:
        self.job.__enter__()
        try:
            self._drop_old_layout()
            if self.job.finished() is None:
                self._processed = self._verify_parts()
        except BaseException:
            self.job.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.job.__exit__(*exc)

    def _drop_old_layout(self) -> None:
        """Chunks and markers of hardaug versions before the job folder cannot be verified: removed, said."""
        parts = self.out.with_name(f".{self.out.name}.parts")
        if parts.is_dir():
            log.warning(
                "%s holds chunks saved by an older hardaug, which cannot be verified: removed, their sources are "
                "redone",
                parts,
            )
            shutil.rmtree(parts, ignore_errors=True)
        self.out.with_name(f".{self.out.name}.job.json").unlink(missing_ok=True)

    def finished(self) -> tuple[pl.DataFrame, dict[str, int]] | None:
        """The kept rows and drop counts of this very job if it already ran to the end here, else None."""
        if self.job.finished() is None:
            return None
        log.info(
            "%s already holds this job's output from an earlier run: nothing to do (--restart redoes it)", self.out
        )
        return pl.read_parquet(self.out), json.loads(self.drops.read_text(encoding="utf-8"))

    def _verify_parts(self) -> set[str]:
        """The source ids of the saved parts, each part checked against the digest of the sources it was
        saved for and against the parts before it; a part that fails is named and redone."""
        processed: set[str] = set()
        for name, part in list(self.job.parts.items()):
            file = self.folder / jobs.PARTS / part.file
            try:
                ids = set(pl.read_parquet(file, columns=["source_id"])["source_id"].cast(pl.String).to_list())
            except (OSError, pl.exceptions.PolarsError) as exc:
                self.job.drop_part(name, f"unreadable as a chunk of augmented rows ({jobs.first_line(exc)})")
                continue
            if part.meta.get("sources_sha256") != jobs.ids_digest(ids) or part.meta.get("sources") != len(ids):
                self.job.drop_part(
                    name, "does not hold the sources it was saved for (swapped for another part or edited)"
                )
            elif overlap := ids & processed:
                self.job.drop_part(name, f"holds {len(overlap)} sources another part holds too ({min(overlap)!r}, ...)")
            else:
                processed |= ids
        return processed

    def done_sources(self) -> set[str]:
        """Source ids already processed (whatever their outputs), to skip on restart."""
        return set(self._processed)

    def write_chunk(self, rows: pl.DataFrame, processed: Sequence[str]) -> None:
        """Save one finished chunk as a part of the job. `processed` lists every source id of the chunk, so
        sources whose outputs were all dropped (or that were skipped) are remembered too."""
        seen = set(rows["source_id"].to_list())
        covered = set(processed)
        if foreign := seen - covered:  # a producer's bug: the part's record would not say what it holds
            raise RuntimeError(f"a chunk holds rows of sources it did not process: {sorted(foreign)[:5]}")
        if again := covered & self._processed:
            raise RuntimeError(f"a chunk repeats sources already saved: {sorted(again)[:5]}")
        markers = pl.DataFrame(
            {"source_id": [s for s in processed if s not in seen], "drop_reason": PROCESSED},
            schema={"source_id": pl.String, "drop_reason": pl.String},
        )
        chunk = pl.concat([rows.select(PART_SCHEMA.keys()).cast(PART_SCHEMA), markers], how="diagonal_relaxed")
        # a new number after the highest saved: a part redone after a deletion must not overwrite another
        number = 1 + max((int(name.rsplit("_", 1)[1]) for name in self.job.parts), default=-1)
        meta = {"sources": len(covered), "sources_sha256": jobs.ids_digest(covered)}
        self.job.save_part(f"chunk_{number:05d}", chunk, meta=meta)
        self._processed |= covered

    def finish(self, sources: Iterable[str] | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
        """Write the kept rows (input order, then the order the augmenter made them) and the drop counts,
        then the done marker; the parts are removed. `sources`: the job's source ids, which the parts must
        cover exactly (InputError, nothing written, if not)."""
        if sources is not None:
            self._check_coverage(set(sources))
        saved = self.job.read_parts()
        every = (
            saved.filter(pl.col("drop_reason").ne_missing(PROCESSED))
            if saved is not None
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
        if (twice := kept.filter(pl.col("id").is_duplicated())).height:
            self._refuse(f"hold {twice.height} augmented rows whose id another row has too ({twice['id'][0]!r}, ...)")
        write_parquet(kept, self.out, classes=self.classes)
        write_json(counts, self.drops)
        self.job.finish({"counts": counts})  # last: the marker vouches for both files
        return kept, counts

    def _check_coverage(self, expected: set[str]) -> None:
        if foreign := self._processed - expected:
            self._refuse(f"hold {len(foreign)} sources that are not in the input ({min(foreign)!r}, ...)")
        if missing := expected - self._processed:
            self._refuse(f"miss {len(missing)} sources of the input ({min(missing)!r}, ...)")

    def _refuse(self, what: str) -> None:
        raise InputError(
            f"the saved parts in {self.folder} {what}: the job folder was changed by hand or by another program. "
            f"Nothing was written to {self.out}; run the same command with --restart to redo the job."
        )


def run_job(
    output: AugmentedOutput, sources: pl.DataFrame, produce: Producer, *, stage: str, on_progress: OnProgress | None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The one loop of every augmentation job, in one process or on Ray: skip a finished job, hand the
    sources not done yet to `produce`, save each chunk it returns, report progress, and finish.

    `output` must be entered (locked). Progress: `Progress(stage, "source", done, total, step)` once at the
    start (step 0: what earlier runs did) and after each saved chunk (step = its sources; `detail`: outputs,
    output_tokens, seconds and the producer's own).
    Returns the kept rows (augmented schema, input order) and the counts by drop reason."""
    if (found := output.finished()) is not None:
        return found
    seen = output.done_sources()
    pending = sources.filter(~pl.col("id").is_in(list(seen))) if seen else sources
    done, total = sources.height - pending.height, sources.height
    if done:
        log.info("resuming: %d of %d sources already done", done, total)
    report(on_progress, stage, "source", done, total, 0)
    if pending.height:
        with contextlib.closing(iter(produce(pending))) as finished_chunks:
            for chunk, result in finished_chunks:
                output.write_chunk(result.rows, chunk["id"].to_list())
                done += chunk.height
                report(
                    on_progress, stage, "source", done, total, chunk.height, outputs=result.outputs,
                    output_tokens=result.output_tokens, seconds=result.seconds, **result.detail,
                )  # fmt: skip
    return output.finish(sources["id"].to_list())


def augment_file(
    job: ChunkJob,
    input: str | Path,
    out: str | Path,
    executor: Executor | None = None,
    *,
    restart: bool = False,
    text_col: str = "text",
    label_col: str = "label",
    id_col: str = "id",
    on_progress: OnProgress | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Run one augmentation job (EdaJob, BacktranslateJob, ParaphraseJob) on every source of `input`
    (hard.parquet or any id/text/label table) and write `out` (Parquet), on `executor` (default: in this
    process, `engine.stage.InProcess`; `engine.cluster.executor.OnRay` for Ray). Both write and resume
    the same job folder, so a job can start on one and finish on the other.

    Input, output path, model and options are checked before anything is written (and, on Ray, before a
    cluster is joined); the model loads at the first chunk still to do. Each finished chunk (shard) is
    saved, so a rerun does only the missing sources (`restart=True` discards them). Progress:
    `engine.progress.Progress` per saved chunk (stage: the method, unit "source"; detail: outputs,
    output_tokens, seconds, and on Ray `shard`, `node`, `worker_pid`). Returns the kept rows (augmented
    schema, input order) and the counts by drop reason.
    """
    executor = executor or InProcess()
    sources = load_sources(input, text_col=text_col, label_col=label_col, id_col=id_col)
    check_output(out)
    job = executor.place(job).bind(sources, str(input))  # the rows' record may depend on the sources
    job.check(local=executor.local)
    executor.preflight()  # Ray installed, the cluster reachable: before the output folder is touched
    key = job.fingerprint(sources)
    with AugmentedOutput(out, fingerprint=key, restart=restart, classes=classes_of(input)) as output:
        producer = executor.producer(job, sources.height)
        return run_job(output, sources, producer, stage=job.stage, on_progress=on_progress)


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
