"""Input checks at the public edge. Each stops with an `InputError` that names the file, the column,
the first offending rows and the fix, before any work is done or any output is written.

After validation every frame has the canonical columns `id` (unique, non-empty), `text` (String, never
null) and `label` (Int64 in 0..K-1); the stages inside trust them.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence

import polars as pl

from engine.errors import InputError
from engine.labels import MAX_CLASSES, show_map
from engine.schema import prob_columns

log = logging.getLogger(__name__)

SHOW_ROWS = 5
PROB_SUM_TOLERANCE = 1e-3
_PROB_PATTERNS = (re.compile(r"^prob_(\d+)$"), re.compile(r"^class_(\d+)_prob$"))


def show_rows(frame: pl.DataFrame, mask: pl.Expr, columns: Sequence[str]) -> str:
    """The first offending rows as 'row 12 (id=..., label=...)', 0-based like the file's data rows."""
    bad = frame.with_row_index("_row").filter(mask)
    shown = []
    for row in bad.head(SHOW_ROWS).iter_rows(named=True):
        fields = ", ".join(f"{c}={row[c]!r}" for c in columns if c in row)
        shown.append(f"row {row['_row']} ({fields})")
    more = f" and {bad.height - SHOW_ROWS} more" if bad.height > SHOW_ROWS else ""
    return "; ".join(shown) + more


def _missing_column(source: str, column: str, frame: pl.DataFrame, option: str) -> InputError:
    close = difflib.get_close_matches(column, frame.columns, n=1)
    hint = f" Did you mean {close[0]!r}? Pass {option} {close[0]}." if close else f" Pass {option} <column>."
    return InputError(f"{source}: no column {column!r}; the file has {frame.columns}.{hint}")


def check_columns(frame: pl.DataFrame, source: str, columns: Mapping[str, str]) -> None:
    """`columns` maps a required column to the CLI option that names it."""
    for column, option in columns.items():
        if column not in frame.columns:
            raise _missing_column(source, column, frame, option)


def prepare_dataset(
    frame: pl.DataFrame,
    *,
    source: str,
    text_col: str = "text",
    label_col: str | None = "label",
    id_col: str = "id",
    label_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    map_source: str | None = None,
    complete: bool = False,
) -> tuple[pl.DataFrame, list[str]]:
    """Validate and rename to `id`, `text`, `label`; map string labels to 0..K-1.

    Returns the frame and the class names (index = class id). With `label_col=None` (an unlabeled test
    set) no `label` column is produced and the names are `label_names` or []. `map_source` says where
    `label_names` came from (for messages). `complete`: the file holds every class (a training set), so
    integer labels 0..3 and one 7 mean a wrong row, not 8 classes.
    """
    if frame.height == 0:
        raise InputError(f"{source} has no rows.")
    options = {"--text-col": text_col, "--label-col": label_col, "--id-col": id_col}
    named = [(option, column) for option, column in options.items() if column is not None]
    for i, (option, column) in enumerate(named):
        for other, other_column in named[i + 1 :]:
            if column == other_column:
                raise InputError(
                    f"{source}: {option} and {other} both name the column {column!r}; each must name its own "
                    f"column (the file has {frame.columns}). Pass the other column's name to one of them."
                )
    required = {text_col: "--text-col"}
    if label_col is not None:
        required[label_col] = "--label-col"
    check_columns(frame, source, required)

    renames = {text_col: "text", id_col: "id"}
    if label_col is not None:
        renames[label_col] = "label"
    if id_col not in frame.columns and id_col != "id":  # suggest from the file's own columns, before renames
        raise _missing_column(source, id_col, frame, "--id-col")
    # A column that already uses a canonical name for something else keeps its data under a new name.
    clashes = {c: f"{c}_original" for c in ("id", "text", "label") if c in frame.columns and c not in renames}
    frame = frame.rename(clashes)
    if id_col not in frame.columns:
        log.info("%s has no id column; using the row number as id", source)
        frame = frame.with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
        renames.pop(id_col)
    frame = frame.rename({k: v for k, v in renames.items() if k != v})

    frame = _check_ids(frame, source, id_col)
    frame = _check_texts(frame, source, text_col)
    names = list(label_names) if label_names is not None else []
    if label_col is not None:
        frame, names = _check_labels(frame, source, label_col, names or None, num_classes, map_source, complete)
        if complete and frame["label"].n_unique() < 2:  # scikit-learn's refusal would not name the file
            only = names[frame["label"][0]] if names else frame["label"][0]
            raise InputError(
                f"{source}: every row of column {label_col!r} has the label {only!r}; a classifier needs rows of at "
                "least 2 classes. Pass the whole training set, or check that --label-col names the label column."
            )
    return frame, names


def _check_ids(frame: pl.DataFrame, source: str, id_col: str) -> pl.DataFrame:
    ids = pl.col("id")
    empty = ids.is_null()
    if frame.schema["id"] == pl.String:
        empty = empty | (ids.str.strip_chars() == "")
    if frame.select(empty.any()).item():
        raise InputError(
            f"{source}: column {id_col!r} has empty ids at {show_rows(frame, empty, ['id', 'text'])}. "
            "Every row needs a unique id; fill them in, or drop the column to number rows automatically."
        )
    dup = ids.is_duplicated()
    if frame.select(dup.any()).item():
        n = frame.select(dup.sum()).item()
        raise InputError(
            f"{source}: column {id_col!r} has {n} rows with duplicate ids, first at "
            f"{show_rows(frame, dup, ['id', 'text'])}. Ids must be unique: de-duplicate the rows, or drop the "
            "id column to number rows automatically."
        )
    return frame


def _check_texts(frame: pl.DataFrame, source: str, text_col: str) -> pl.DataFrame:
    dtype = frame.schema["text"]
    if dtype in (pl.Categorical, pl.Enum) or isinstance(dtype, pl.Enum):
        frame = frame.with_columns(pl.col("text").cast(pl.String))
    elif dtype != pl.String and dtype != pl.Null:
        raise InputError(
            f"{source}: column {text_col!r} holds {dtype} values, not text (first values: "
            f"{frame['text'].head(3).to_list()}). Pass the column with the texts via --text-col."
        )
    blank = pl.col("text").is_null() | (pl.col("text").cast(pl.String).str.strip_chars() == "")
    if frame.select(blank.all()).item():
        raise InputError(
            f"{source}: every text in column {text_col!r} is empty or whitespace ({frame.height} rows). Check "
            f"--text-col (the file has {frame.columns}); a model cannot learn from empty texts."
        )
    nulls = frame.select(pl.col("text").is_null().sum()).item()
    if nulls:
        log.warning("%s: %d empty texts in %r are kept as empty strings", source, nulls, text_col)
        frame = frame.with_columns(pl.col("text").cast(pl.String).fill_null(""))
    return frame


def _check_labels(
    frame: pl.DataFrame,
    source: str,
    label_col: str,
    label_names: Sequence[str] | None,
    num_classes: int | None,
    map_source: str | None = None,
    complete: bool = False,
) -> tuple[pl.DataFrame, list[str]]:
    label = pl.col("label")
    # NaN is how pandas writes a missing label
    label_missing = label.is_null() | label.is_nan() if frame.schema["label"].is_float() else label.is_null()
    if frame.select(label_missing.any()).item():
        raise InputError(
            f"{source}: column {label_col!r} has missing labels at "
            f"{show_rows(frame, label_missing, ['id', 'text'])}. Drop or label those rows."
        )
    dtype = frame.schema["label"]
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        values = frame["label"].cast(pl.String)
        names = list(label_names) if label_names is not None else sorted(values.unique().to_list())
        if len(names) > MAX_CLASSES:
            raise InputError(
                f"{source}: column {label_col!r} has {len(names)} different labels (first "
                f"{names[:SHOW_ROWS]}); hardaug takes at most {MAX_CLASSES} classes. Check that --label-col names "
                "the label column."
            )
        unknown = ~values.is_in(names)
        if unknown.any():
            if map_source is not None:  # another file's map: show both, the user must pick one
                raise InputError(
                    f"{source}: labels {sorted(values.filter(unknown).unique().to_list())[:SHOW_ROWS]} in "
                    f"{label_col!r} are not classes of {map_source}, whose label map is {show_map(names)}; this "
                    f"file's labels would map as {show_map(sorted(values.unique().to_list()))}. Use the same "
                    "labels (names or ids) in both files."
                )
            raise InputError(
                f"{source}: labels {sorted(values.filter(unknown).unique().to_list())[:SHOW_ROWS]} in "
                f"{label_col!r} are not in the label map {names}. Add them to the map or fix the rows."
            )
        log.info("%s: mapped string labels to ids: %s", source, {n: i for i, n in enumerate(names)})
        return frame.with_columns(
            values.replace_strict(names, list(range(len(names))), return_dtype=pl.Int64).alias("label")
        ), names
    if dtype == pl.Boolean:
        frame = frame.with_columns(label.cast(pl.Int64))
    elif dtype.is_float():
        infinite = label.is_infinite()
        if frame.select(infinite.any()).item():
            raise InputError(
                f"{source}: column {label_col!r} has infinite labels at "
                f"{show_rows(frame, infinite, ['id', 'label'])}. Labels must be class ids 0..K-1 or names: fix "
                "or drop those rows."
            )
        fractional = label != label.round()
        if frame.select(fractional.any()).item():
            raise InputError(
                f"{source}: column {label_col!r} has non-integer labels at "
                f"{show_rows(frame, fractional, ['id', 'label'])}. Labels must be class ids 0..K-1 or names."
            )
    elif not dtype.is_integer():
        raise InputError(f"{source}: column {label_col!r} holds {dtype}; expected class ids 0..K-1 or names.")
    # Bounded before anything is sized by the largest id (class lists, counts, probability columns) and before
    # the cast, which a float of 1e30 or a UInt64 above 2**63 would fail. Small negative ids get the
    # out-of-range message below.
    huge = (label >= MAX_CLASSES) | (label <= -MAX_CLASSES)
    if frame.select(huge.any()).item():
        raise InputError(
            f"{source}: column {label_col!r} has labels far outside any class id at "
            f"{show_rows(frame, huge, ['id', 'label'])}. Class ids are 0..K-1 with K at most {MAX_CLASSES}: fix "
            "those labels, or check that --label-col names the label column."
        )
    frame = frame.with_columns(label.cast(pl.Int64))
    if complete and num_classes is None and label_names is None:
        _check_no_gaps(frame, source, label_col)
    k = num_classes if num_classes is not None else int(frame["label"].max()) + 1
    out_of_range = (label < 0) | (label >= k)
    if frame.select(out_of_range.any()).item():
        raise InputError(
            f"{source}: column {label_col!r} has labels outside 0..{k - 1} at "
            f"{show_rows(frame, out_of_range, ['id', 'label'])}. Labels must be class ids 0..K-1 "
            f"(K={k}{' from the probability columns' if num_classes is not None else ''}); "
            "renumber them, or use class names as labels."
        )
    names = list(label_names) if label_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise InputError(f"{source}: {len(names)} class names given for {k} classes: {names}.")
    return frame, names


def _check_no_gaps(frame: pl.DataFrame, source: str, label_col: str) -> None:
    """Integer labels of a full dataset are 0..K-1 with rows for each: a class id with no rows below the
    largest one means the rows above it are wrong (labels 0..3 and one 7), not that there are 8 classes."""
    present = set(frame["label"].unique().to_list())
    missing = [i for i in range(max(present) + 1) if i not in present]
    if not missing or min(present) < 0:
        return  # negative ids get the out-of-range message below
    above = pl.col("label") > missing[0]
    raise InputError(
        f"{source}: column {label_col!r} has classes {sorted(i for i in present if i < missing[0])} and then "
        f"{sorted(i for i in present if i > missing[0])[:SHOW_ROWS]} with no rows of class(es) {missing[:SHOW_ROWS]} "
        f"between them, at {show_rows(frame, above, ['id', 'label'])}. Class ids must be 0..K-1, each with rows: fix "
        "those labels, or renumber the classes."
    )


def check_augmented_pool(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Augmented rows to train on (hardaug filter's kept.parquet, or augmenter output): texts present,
    integer labels present, and `kept`, when there, Boolean. Returns the frame unchanged."""
    for column in ("text", "label"):
        if column in frame.columns and frame.select(pl.col(column).is_null().any()).item():
            empty = show_rows(frame, pl.col(column).is_null(), ["id", "text"])
            raise InputError(
                f"{source}: column {column!r} is empty at {empty}. "
                "Augmented rows to train on need a text and a label: drop those rows, or run the file through "
                "hardaug filter (it rejects empty texts)."
            )
    if "label" in frame.columns and not frame.schema["label"].is_integer():
        raise InputError(
            f"{source}: column 'label' holds {frame.schema['label']}, not class ids (first values "
            f"{frame['label'].head(3).to_list()}). Augmented rows carry the class ids of the training set."
        )
    if "kept" in frame.columns and frame.schema["kept"] != pl.Boolean:
        raise InputError(
            f"{source}: column 'kept' holds {frame.schema['kept']} values (first {frame['kept'].head(3).to_list()}), "
            "not true/false. Write it as a Boolean column, as hardaug filter does (e.g. in Polars "
            "pl.col('kept') == 'true')."
        )
    return frame


def find_prob_columns(frame: pl.DataFrame, source: str) -> list[str]:
    """Find `prob_0..prob_{K-1}` or the notebook's `class_0_prob..class_{K-1}_prob`, in class order."""
    for pattern in _PROB_PATTERNS:
        found = {int(m.group(1)): c for c in frame.columns if (m := pattern.match(c))}
        if found:
            k = max(found) + 1
            missing = [i for i in range(k) if i not in found]
            if missing:
                raise InputError(
                    f"{source}: probability columns for classes {missing} are missing (found "
                    f"{sorted(found.values())}). Add them, or name the columns in order with --prob-cols."
                )
            return [found[i] for i in range(k)]
    raise InputError(
        f"{source}: no class-probability columns found; expected prob_0..prob_{{K-1}} or "
        f"class_0_prob..class_{{K-1}}_prob, the file has {frame.columns}. Name them with --prob-cols a,b,c."
    )


def _parse_numbers(frame: pl.DataFrame, col: str, source: str) -> pl.DataFrame:
    """A CSV column of numbers with one cell polars cannot infer as a number ("nan" in a file without other
    NaN, a stray word) is read as text: parse it, so the checks below name the NaN row, or name the cell that
    is no number at all."""
    parsed = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    unparsed = pl.col(col).is_not_null() & parsed.is_null()
    if frame.select(unparsed.any()).item():
        raise InputError(
            f"{source}: probability column {col!r} holds text that is not a number at "
            f"{show_rows(frame, unparsed, ['id', col])}. Check --prob-cols, or fix those cells."
        )
    return frame.with_columns(parsed.alias(col))


def prepare_probs(
    frame: pl.DataFrame, prob_cols: Sequence[str], *, source: str, renormalize: bool = False
) -> pl.DataFrame:
    """Check class probabilities and store them as Float64 `prob_0..prob_{K-1}` (in `prob_cols` order)."""
    check_columns(frame, source, dict.fromkeys(prob_cols, "--prob-cols"))
    if len(prob_cols) < 2:
        raise InputError(f"{source}: need at least 2 probability columns, got {list(prob_cols)}.")
    for col in prob_cols:
        if frame.schema[col] == pl.String:
            frame = _parse_numbers(frame, col, source)
        if not frame.schema[col].is_numeric():
            raise InputError(
                f"{source}: probability column {col!r} holds {frame.schema[col]}, not numbers "
                f"(first values {frame[col].head(3).to_list()}). Check --prob-cols."
            )
    k = len(prob_cols)
    targets = prob_columns(k)
    clashes = {c: f"{c}_original" for c in targets if c in frame.columns and c not in prob_cols}
    frame = frame.rename(clashes).with_columns(
        [pl.col(c).cast(pl.Float64).alias(t) for c, t in zip(prob_cols, targets, strict=True)]
    )
    frame = frame.drop([c for c in prob_cols if c not in targets])
    probs = [pl.col(c) for c in targets]
    show = ["id", *targets]
    bad = pl.any_horizontal([p.is_null() | p.is_nan() | p.is_infinite() for p in probs])
    if frame.select(bad.any()).item():
        raise InputError(
            f"{source}: missing or NaN probabilities at {show_rows(frame, bad, show)}. Every row needs a "
            "finite probability for every class; re-run the predictions for those rows or drop them."
        )
    negative = pl.any_horizontal([p < 0 for p in probs])
    if frame.select(negative.any()).item():
        raise InputError(
            f"{source}: negative probabilities at {show_rows(frame, negative, show)}. These look like logits "
            "or log-probabilities: apply softmax (or exp) first."
        )
    total = pl.sum_horizontal(probs)
    off = (total - 1).abs() > PROB_SUM_TOLERANCE
    n_off = frame.select(off.sum()).item()
    if n_off and not renormalize:
        raise InputError(
            f"{source}: {n_off} rows have probabilities that do not sum to 1 (tolerance "
            f"{PROB_SUM_TOLERANCE}), first at {show_rows(frame, off, show)}. If they are unnormalized scores "
            "pass --renormalize to divide each row by its sum; if they are logits apply softmax first."
        )
    if renormalize:
        zero = total <= 0
        if frame.select(zero.any()).item():
            raise InputError(
                f"{source}: rows whose probabilities sum to 0 cannot be renormalized: {show_rows(frame, zero, show)}."
            )
        if n_off:
            log.warning("%s: renormalized %d rows whose probabilities did not sum to 1", source, n_off)
        frame = frame.with_columns([(p / total).alias(c) for p, c in zip(probs, targets, strict=True)])
    return frame
