"""One label map per job, carried with the data.

String labels become class ids 0..K-1 through a label map (the class names, index = id). The map is found
once (from the user, or saved by an earlier stage) and travels with the files: `hardaug oof` and `mine`
write `label_map.json` beside their outputs, and every Parquet file hardaug writes with labels holds the
names in its metadata under `hardaug.classes`. Where two files meet (train and test, augmented rows and the
training set), their maps are compared and a mismatch stops the run with both maps shown, instead of
silently renumbering one of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from engine.errors import InputError

METADATA_KEY = "hardaug.classes"
LABEL_MAP_FILE = "label_map.json"
# Far above any text-classification task; a larger id is a wrong row or column, and sizing class lists or
# probability columns by it would exhaust memory.
MAX_CLASSES = 10_000


def default_names(k: int) -> list[str]:
    """The names of integer labels that came without names."""
    return [str(i) for i in range(k)]


def is_named(names: Sequence[str]) -> bool:
    """False for the map of plain integer labels ('0', '1', ...), which names nothing to compare."""
    return list(names) != default_names(len(names))


def show_map(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"{i}: {n!r}" for i, n in enumerate(names)) + "}"


def metadata(names: Sequence[str] | None) -> dict[str, str] | None:
    """Parquet key-value metadata that carries the map (None: nothing to carry)."""
    return None if names is None else {METADATA_KEY: json.dumps(list(names), ensure_ascii=False)}


def saved_classes(path: str | Path) -> tuple[list[str], str] | None:
    """The label map saved with a file, and where it was found: the file's Parquet metadata, else a
    `label_map.json` beside it (written by `hardaug oof` and `hardaug mine`). None when there is none."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        try:
            found = pl.read_parquet_metadata(path).get(METADATA_KEY)
        except (OSError, pl.exceptions.PolarsError):
            found = None  # an unreadable file is reported by read_table, with its own message
        if found is not None:
            return _names(json.loads(found), f"{path} (metadata)"), f"{path}"
    beside = path.parent / LABEL_MAP_FILE
    if path.is_file() and beside.is_file():
        try:
            data = json.loads(beside.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f'{beside} is not valid JSON ({exc}); it should be {{"classes": [names]}}.') from None
        return _names(data.get("classes") if isinstance(data, dict) else None, str(beside)), str(beside)
    return None


def _names(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: the label map must be a list of class names in class-id order, got {value!r}.")
    return value


def check_same_classes(names: Sequence[str], where: str, other: Sequence[str], other_where: str) -> None:
    """Stop when two files that meet number their classes differently. Plain integer labels (no names)
    agree with any map of the same size."""
    names, other = list(names), list(other)
    if names == other or (len(names) == len(other) and not (is_named(names) and is_named(other))):
        return
    raise InputError(
        f"the label maps differ: {where} has {show_map(names)}, {other_where} has {show_map(other)}. "
        "The same class id would mean different classes; make both files use one label map (the oof stage's "
        f"{LABEL_MAP_FILE}, or class names in both files)."
    )
