"""Reading tables and writing outputs so that a killed run never leaves a file that looks complete.

Every output goes to a temporary name in the destination folder and is renamed into place when it is
fully written (`os.replace` is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InputError

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV/TSV/Parquet file into a frame; every unusable path is an `InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise InputError(
            f"{path} is a folder, not a file. Pass the CSV or Parquet file inside it "
            f"(for example {path / 'train.csv'} or {path / 'oof.parquet'})."
        )
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unknown file type {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}.")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes). Expected a header and at least one row.")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            # Texts can look numeric ("10", "1점"); inferring over the whole file avoids a late parse error.
            frame = pl.read_csv(
                path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=None, quote_char='"'
            )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: could not be read as {suffix[1:]} ({exc}).") from exc
    if frame.height == 0:
        raise InputError(f"{path} has a header but no rows. Expected at least one row of data.")
    return frame


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    log.info("wrote %s (%d rows)", path, frame.height)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s", path)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n", path)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays show up in metrics; JSON has no type for them.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def check_output_dir(path: str | Path) -> Path:
    """Fail early, before any work, if `path` cannot hold outputs."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"output folder {path} is an existing file. Pass a folder path with --out-dir.")
    return path
