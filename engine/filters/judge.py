"""Who judges an augmentation's label: one interface over every kind of label model, and the label policies.

The question every label model answers here: "the class probabilities of these texts, each judged by the
model that held out source X" (`Judge.probabilities(texts, sources)`). Two kinds of judge:
- `WholeJudge`: one model for every row (the TF-IDF model trained here on the whole training set, a saved
  `.npz`, a transformers folder); it has seen every source, so it judges them in fold.
- `FoldJudge`: the K models of an oof job, fold F judging the rows whose source fold F held out, so its
  opinion of an augmentation is comparable with the source's out-of-fold probability. The fold models are
  the TF-IDF models refitted here from `--oof`'s folds (`engine.oof.refit`), the same saved as one `.npz`
  (`save_fold_models`, the pipeline's label-model stage), or the transformers checkpoints that
  `oof --backend transformers --keep-checkpoints` keeps (OUT_DIR/checkpoints/fold_XX). Each saved fold
  carries the marker of the job it was trained in (`engine.oof.refit.fold_marker`); fold models of another
  oof job (other data, folds or classes) are refused before anything is written.

The policies (`FilterConfig.label_policy`), on p = p(label | augmentation) and p_src = p(label | source)
under the same model: `absolute` keeps a row when its label is the top class (or p >= --min-label-prob);
`relative` rejects it only when p < (1 - margin) x p_src, i.e. the edit took more than that share of the
label's probability away; `off` rejects nothing. The scaled rule asks a hard source (p_src = 0.1) not to
lose more than margin x 0.1: a fixed margin of 0.1 would make such rows unrejectable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.filters.label import (
    ARRAYS,
    FOLDS_FORMAT,
    LabelModel,
    check_arrays,
    check_classes,
    load_arrays,
    model_arrays,
    model_from_arrays,
    read_meta,
)
from engine.io import read_table
from engine.labels import check_same_classes, saved_classes
from engine.oof.refit import FORMAT, MARKER, fold_marker
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

# A relative judgement compares two float computations of one model; identical texts must pass exactly.
_TOLERANCE = 1e-9


class Judge(Protocol):
    k: int
    out_of_fold: bool

    def probabilities(
        self, texts: Sequence[str], sources: Sequence[str], *, on_progress: OnProgress | None = None
    ) -> np.ndarray:
        """(len(texts), k) float64, row i judged by the model that held out source `sources[i]`."""
        ...

    def folds(self, sources: Sequence[str]) -> np.ndarray | None:
        """The fold whose model judges each source's rows (None for a whole-train model)."""
        ...


class WholeJudge:
    """One model for every row: a `LabelModel` or anything with `k` and `predict_proba` (the Ray pool)."""

    out_of_fold = False

    def __init__(self, model) -> None:
        self.model, self.k = model, model.k

    def probabilities(self, texts, sources, *, on_progress=None) -> np.ndarray:
        return self.model.predict_proba(list(texts), on_progress=on_progress)

    def folds(self, sources) -> None:
        return None


class FoldJudge:
    """K fold models; the rows of source X go to the model of the fold that held X out (`fold_of`)."""

    out_of_fold = True

    def __init__(self, models: Sequence, fold_of: Mapping[str, int], *, where: str = "--oof") -> None:
        self.models, self.fold_of, self.where = list(models), dict(fold_of), where
        self.k = self.models[0].k

    def folds(self, sources) -> np.ndarray:
        found = np.fromiter((self.fold_of.get(str(s), -1) for s in sources), dtype=np.int64, count=len(sources))
        if (found < 0).any():
            missing = list(dict.fromkeys(str(s) for s, f in zip(sources, found, strict=True) if f < 0))
            raise InputError(
                f"{len(missing)} source ids are not rows of {self.where} (first: {missing[:5]}): out-of-fold "
                "judging needs the fold of every source. Pass the oof.parquet of the training set the sources "
                "come from."
            )
        return found

    def probabilities(self, texts, sources, *, on_progress=None) -> np.ndarray:
        texts = list(texts)
        fold = self.folds(sources)
        out = np.zeros((len(texts), self.k), dtype=np.float64)
        report(on_progress, "label model", "text", 0, len(texts), 0)
        done = 0
        for f, model in enumerate(self.models):
            rows = np.flatnonzero(fold == f)
            if rows.size:
                out[rows] = model.predict_proba([texts[i] for i in rows])
                done += rows.size
                report(on_progress, "label model", "text", done, len(texts), rows.size)
        return out


# ------------------------------------------------------------------------------------------------ policies
def judge_labels(
    probs: np.ndarray, source_probs: np.ndarray, labels: np.ndarray, *, policy: str, margin: float, min_prob=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(p(label | augmentation), p(label | source), consistent or None for `off`), each of shape (n,)."""
    n = len(labels)
    prob = probs[np.arange(n), labels]
    source_prob = source_probs[np.arange(n), labels]
    if policy == "off":
        return prob, source_prob, None
    if policy == "absolute":
        consistent = probs.argmax(axis=1) == labels if min_prob is None else prob >= min_prob
    elif policy == "relative":
        consistent = prob >= (1.0 - margin) * source_prob - _TOLERANCE
    else:
        raise ValueError(f"unknown label policy {policy!r}")
    return prob, source_prob, consistent


# --------------------------------------------------------------------------------------------- fold files
def read_folds(path: str | Path, train: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The fold of each row of `train` (id, text, label; ids as text) from an oof.parquet's `fold` column,
    checked: the same rows with the same labels and texts, the same classes, folds 0..K-1 all used."""
    source = f"--oof {path}"
    if not Path(path).is_file():
        raise InputError(f"{source}: no such file. Pass the oof.parquet that hardaug oof wrote for --train.")
    frame = read_table(path)
    missing = [c for c in ("id", "fold", "label") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: no column(s) {missing}; out-of-fold judging needs the id, label and fold of every training "
            "row, as hardaug oof writes them in oof.parquet."
        )
    if (saved := saved_classes(path)) is not None:
        check_same_classes(saved[0], saved[1], names, "--train")
    if not frame.schema["fold"].is_integer() or frame["fold"].null_count():
        raise InputError(f"{source}: column 'fold' must hold integer fold ids (found {frame.schema['fold']}).")
    columns = [c for c in ("text", "label") if c in frame.columns]
    oof = frame.select(pl.col("id").cast(pl.String), "fold", *[pl.col(c).alias(f"oof_{c}") for c in columns])
    if oof["id"].is_duplicated().any():
        raise InputError(f"{source}: ids repeat; it is not one row per training row.")
    joined = train.select("id", "text", "label").join(oof, on="id", how="left", maintain_order="left")
    absent = joined.filter(pl.col("fold").is_null())["id"]
    if absent.len() or oof.height != train.height:
        raise InputError(
            f"{source} does not cover --train: {absent.len()} training ids are missing from it (first: "
            f"{absent.head(5).to_list()}), it has {oof.height:,} rows for {train.height:,}. Pass the oof.parquet "
            "made from this training set."
        )
    differ = pl.col("label") != pl.col("oof_label").cast(pl.Int64, strict=False)
    if "oof_text" in joined.columns:
        differ = differ | (pl.col("text") != pl.col("oof_text").cast(pl.String))
    bad = joined.filter(differ.fill_null(True))
    if bad.height:
        raise InputError(
            f"{source}: {bad.height:,} rows have another label or text than in --train (first id: "
            f"{bad['id'][0]}). Pass the oof.parquet made from this training set."
        )
    folds = joined["fold"].to_numpy().astype(np.int64)
    used = np.unique(folds)
    if used[0] != 0 or used[-1] != used.size - 1:
        raise InputError(f"{source}: folds {used.tolist()} are not 0..K-1.")
    return folds


def expected_markers(train: pl.DataFrame, folds: np.ndarray, names: Sequence[str]) -> list[dict]:
    ids, labels = train["id"].to_list(), train["label"].to_numpy()
    return [fold_marker(ids, labels, folds, f, names) for f in range(int(folds.max()) + 1)]


def check_markers(found: Sequence[dict | None], expected: Sequence[dict], source: str, oof: str) -> None:
    """Refuse fold models trained in another oof job than the one whose folds `--oof` holds."""
    fix = (
        f"Pass the fold models of the oof job that wrote {oof} (oof --backend transformers --keep-checkpoints keeps "
        "them in OUT_DIR/checkpoints), or --label-model tfidf to refit TF-IDF fold models here."
    )
    if len(found) != len(expected):
        raise InputError(
            f"--label-model {source} holds {len(found)} fold models, but {oof} has {len(expected)} folds. {fix}"
        )
    for f, (marker, want) in enumerate(zip(found, expected, strict=True)):
        if marker is None or marker.get("format") != FORMAT:
            raise InputError(f"--label-model {source}: fold {f} carries no hardaug fold marker ({MARKER}). {fix}")
        if marker.get("classes") != want["classes"]:
            raise InputError(
                f"--label-model {source}: fold {f} was trained on the classes {marker.get('classes')}, --train has "
                f"{want['classes']}: it comes from another oof job. {fix}"
            )
        if marker != want:
            raise InputError(
                f"--label-model {source}: fold {f} held out other rows than fold {f} of {oof} (another oof job: "
                f"other data, seed or number of folds). {fix}"
            )


def save_fold_models(path: str | Path, models: Sequence[LabelModel], markers: Sequence[dict]) -> None:
    """The K TF-IDF fold models as one `.npz` (arrays, no code), with their markers in its options."""
    arrays: dict[str, np.ndarray] = {}
    for f, model in enumerate(models):
        for name, array in model_arrays(model.model).items():
            arrays[f"fold{f}_{name}"] = array
    meta = {"format": FOLDS_FORMAT, "version": 1, "folds": list(markers)}
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a temporary name
        np.savez_compressed(fh, meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)


def load_fold_file(path: str | Path, k: int) -> tuple[list[LabelModel], list[dict]]:
    """The fold models and markers of a `save_fold_models` file; one line for anything damaged."""
    source = str(path)
    arrays = load_arrays(path)
    if "meta" not in arrays:
        raise InputError(f"--label-model {source} is not a label model saved by hardaug (no meta).")
    meta = read_meta(arrays, source)
    folds = meta.get("folds")
    if meta.get("format") != FOLDS_FORMAT or not isinstance(folds, list) or not folds:
        raise InputError(
            f"--label-model {source} holds one label model, not the fold models of an oof job: pass it without "
            "--oof, or refit fold models with --label-model tfidf --oof."
        )
    models = []
    for f in range(len(folds)):
        prefix = f"fold{f}_"
        part = {name: arrays.get(prefix + name) for name in ("meta", *ARRAYS)}
        if any(v is None for v in part.values()):
            raise InputError(f"--label-model {source}: fold {f}'s arrays are missing; the file is damaged.")
        check_arrays(part, read_meta(part, source), source)
        model = model_from_arrays(part, f"{source} (fold {f})")
        check_classes(model.classes_, k, source)
        models.append(LabelModel("saved", model, k))
    return models, [m if isinstance(m, dict) else None for m in folds]


def checkpoint_markers(folder: str | Path) -> list[dict | None]:
    """The markers of the transformers fold checkpoints `folder/fold_XX` (None where one has none)."""
    found = []
    f = 0
    while (Path(folder) / f"fold_{f:02d}").is_dir():
        marker = Path(folder) / f"fold_{f:02d}" / MARKER
        try:
            found.append(json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None)
        except (OSError, ValueError):
            found.append(None)
        f += 1
    return found


def load_checkpoint_folds(folder: str | Path, k: int, **options) -> list[LabelModel]:
    """The transformers fold checkpoints as label models (after `check_markers`)."""
    n_folds = len(checkpoint_markers(folder))
    return [LabelModel.load(str(Path(folder) / f"fold_{f:02d}"), k, **options) for f in range(n_folds)]


def saved_kind(spec: str) -> str:
    """'folds' for an `.npz` of fold models, 'whole' for one model (reads only its options)."""
    arrays = load_arrays(spec)
    if "meta" in arrays and read_meta(arrays, spec).get("format") == FOLDS_FORMAT:
        return "folds"
    return "whole"
