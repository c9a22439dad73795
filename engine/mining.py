"""`mine_files`: hardness scores, selection, analysis and report from a predictions file, as `hardaug mine`
and the pipeline run it.

Every output is written as one group (engine.io.output_group): scores.parquet, hard.parquet,
label_map.json, summary.json, the HTML report and (with `weights`) weights.parquet appear together or not at
all, so a killed run never leaves a new scores.parquet beside an old summary.json.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine import mine as m
from engine.analyze import Analysis, analyze
from engine.config import AnalysisConfig
from engine.errors import InputError
from engine.io import check_output_dir, check_writable, json_text, output_group, read_table, refuse_overwrite
from engine.labels import metadata
from engine.overlap import find_overlap
from engine.report import render_report
from engine.weights import check_schemes, weights_frame

log = logging.getLogger(__name__)

OUTPUTS = ("scores.parquet", "hard.parquet", "summary.json", "label_map.json")
WEIGHTS = "weights.parquet"


@dataclass(frozen=True)
class PredictionsFile:
    """Where the predictions are and how to read them (engine.mine.load_predictions)."""

    path: Path
    text_col: str = "text"
    label_col: str = "label"
    id_col: str = "id"
    prob_cols: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    renormalize: bool = False


@dataclass(frozen=True)
class Mined:
    """What `mine_files` wrote: the scored rows, the selection trace, the class names and the file paths."""

    mined: pl.DataFrame
    trace: list[dict]
    names: list[str]
    out_dir: Path
    report: Path | None
    weights: Path | None


def mine_files(
    predictions: PredictionsFile,
    out_dir: Path,
    *,
    steps: Sequence[m.Step],
    config: AnalysisConfig,
    presets: Sequence[str] = (),
    label_issues: bool = True,
    test: Path | None = None,
    test_overlap: bool = True,
    report: Path | None = None,
    write_report: bool = True,
    weights: str | None = None,
) -> Mined:
    """Score, select (`steps`, in order), analyse and write OUT_DIR's files (see the module docstring).
    `report`: the HTML report's path (default OUT_DIR/report.html); `test`: test texts for the overlap check
    (default: test_probs.parquet beside the predictions, when there is one); `weights`: a weight scheme
    (engine.weights) whose per-row weights go to OUT_DIR/weights.parquet. Checks every input before writing."""
    if weights is not None:
        check_schemes([weights])
        if weights == "clean-hardness" and not label_issues:
            raise InputError(
                "--weights clean-hardness down-weights the suspected label errors, which --no-label-issues turns "
                "off; drop one of the two."
            )
    out_dir = check_output_dir(out_dir)
    report_path = (report or out_dir / "report.html") if write_report else None
    outputs = [("--out-dir", out_dir / n) for n in OUTPUTS]
    if weights is not None:
        outputs.append(("--out-dir", out_dir / WEIGHTS))
    if report_path is not None:
        outputs.append(("--report", report_path))
        check_writable(report_path.parent, option="--report")
    refuse_overwrite(outputs, {"--input": predictions.path})
    frame, names = m.load_predictions(
        predictions.path,
        text_col=predictions.text_col,
        label_col=predictions.label_col,
        id_col=predictions.id_col,
        prob_cols=list(predictions.prob_cols) if predictions.prob_cols else None,
        class_names=list(predictions.class_names) if predictions.class_names else None,
        renormalize=predictions.renormalize,
    )
    k = len(names)
    for preset in presets:
        m.check_preset(preset, k, names)
    m.check_steps(steps, k, names, dynamics=m.has_dynamics(frame))
    started = time.perf_counter()
    scored = m.score(frame, k, label_issues=label_issues)
    mined, trace = m.select(scored, steps)
    log.info("scored and selected %d rows in %.2f s", mined.height, time.perf_counter() - started)

    overlap = _test_overlap(predictions, test, mined) if test_overlap else None
    # the distinctive terms (Kiwi) are only shown in the report: without one, summary.json goes without them
    analysis = analyze(
        mined,
        names,
        trace=trace,
        config=config,
        source=str(predictions.path),
        test_overlap=overlap,
        terms=write_report,
    )
    weights_path = out_dir / WEIGHTS if weights is not None else None
    _write(mined, names, analysis, out_dir, report_path, weights_frame(weights, mined) if weights else None)
    return Mined(mined, trace, names, out_dir, report_path, weights_path)


def _write(
    mined: pl.DataFrame,
    names: list[str],
    analysis: Analysis,
    out_dir: Path,
    report: Path | None,
    weights: pl.DataFrame | None,
) -> None:
    """Every output in one group: all of them appear, or none (the report is rendered before any is written)."""
    html = render_report(analysis) if report is not None else None
    meta = metadata(names)
    hard = mined.filter(pl.col("selected")).sort("hardness", descending=True, maintain_order=True)
    with output_group() as group:
        mined.write_parquet(group.path(out_dir / "scores.parquet"), compression="zstd", statistics=True, metadata=meta)
        hard.write_parquet(group.path(out_dir / "hard.parquet"), compression="zstd", statistics=True, metadata=meta)
        if weights is not None:
            weights.write_parquet(group.path(out_dir / WEIGHTS), compression="zstd", statistics=True, metadata=meta)
        # the augmenters read hard.parquet's map
        group.path(out_dir / "label_map.json").write_text(json_text({"classes": names}), encoding="utf-8")
        group.path(out_dir / "summary.json").write_text(json_text(analysis.summary), encoding="utf-8")
        if html is not None:
            group.path(report).write_text(html, encoding="utf-8")
    log.info("wrote %s (%d rows) and the other outputs of mine", out_dir / "scores.parquet", mined.height)


def _test_overlap(predictions: PredictionsFile, path: Path | None, mined: pl.DataFrame) -> dict | None:
    """Exact and near-duplicate test texts shared with the training texts (engine.overlap), or None."""
    source = predictions.path
    if path is None and source.is_file() and (source.parent / "test_probs.parquet").exists():
        path = source.parent / "test_probs.parquet"
    if path is None:
        return None
    test = read_table(path)
    column = predictions.text_col if predictions.text_col in test.columns else "text"
    if column not in test.columns:
        raise InputError(
            f"{path}: no text column {predictions.text_col!r} for the train/test overlap check; pass --text-col."
        )
    train_texts = mined["text"].to_list()
    test_texts = test[column].cast(pl.String).fill_null("").to_list()
    overlap = find_overlap(train_texts, test_texts)
    return {"test": str(path), **overlap.summary(train_texts, test_texts)}


__all__ = ["OUTPUTS", "WEIGHTS", "Mined", "PredictionsFile", "mine_files"]
