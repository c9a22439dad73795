"""Reading tables and writing outputs so that a killed run never leaves a file that looks complete.

Every output goes to a temporary name in the destination folder and is renamed into place when it is
fully written (`os.replace` is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InputError
from engine.labels import metadata

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
    if suffix in (".csv", ".tsv"):
        _check_text_file(path, separator="\t" if suffix == ".tsv" else ",")
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


# Tried in order when a text file is not UTF-8: Korean data first (cp949 is a superset of euc-kr), then
# UTF-16 with a byte-order mark, then the other common legacy encodings.
_ENCODINGS = ("cp949", "utf-16", "shift_jis", "gb18030", "cp1252")
_SNIFF_BYTES = 1 << 20


def _check_text_file(path: Path, *, separator: str) -> None:
    """Name the two mistakes polars reports obscurely: a file that is not UTF-8, and a tab-separated file
    named .csv (or a comma-separated one named .tsv)."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            raise InputError(_encoding_message(path, head, exc)) from None
        text = head[: exc.start].decode("utf-8")
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    other, name = ("\t", ".tsv") if separator == "," else (",", ".csv")
    if separator not in header and other in header:
        kind = "tab" if other == "\t" else "comma"
        raise InputError(
            f"{path}: the header {header[:80]!r} looks {kind}-separated, but the file is named "
            f"{path.suffix}. Rename it to {path.with_suffix(name).name} (or save it with the separator of its name)."
        )


def _encoding_message(path: Path, head: bytes, exc: UnicodeDecodeError) -> str:
    found = f"byte 0x{head[exc.start]:02x} at offset {exc.start} is not UTF-8"
    for encoding in _ENCODINGS:
        if encoding == "utf-16" and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            head[: len(head) - 4].decode(encoding)  # the sample may end in the middle of a character
        except UnicodeDecodeError:
            continue
        converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
        return (
            f"{path}: {found}; it looks like {encoding}. Convert it to UTF-8 first, e.g. "
            f"iconv -f {encoding} -t UTF-8 {path} > {converted}"
        )
    return f"{path}: {found}, and it is no common encoding either. Save it as UTF-8."


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextlib.contextmanager
def os_errors_from_polars(path: Path | None) -> Iterator[None]:
    """Polars reports a failed write (a full disk) as a ComputeError holding "(os error 28)": raise it as
    the OSError it is, so the CLI can say "the disk is full" instead of a traceback."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        if (found := _OS_ERROR.search(str(exc))) is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), None if path is None else str(path)) from exc


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with os_errors_from_polars(path):
            yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OutputGroup:
    """Outputs that appear together or not at all: each is written to a temporary name beside its final
    path, and all are renamed into place only when every one is written (see `output_group`)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def path(self, final: str | Path) -> Path:
        """The temporary path to write `final` to."""
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        self.pending.append((tmp, final))
        return tmp


@contextlib.contextmanager
def output_group() -> Iterator[OutputGroup]:
    """Write several outputs, then rename them all into place; if any write fails (a full disk, a
    read-only folder) none of them appears and the temporary files are removed."""
    group = OutputGroup()
    try:
        with os_errors_from_polars(None):
            yield group
        for tmp, final in group.pending:
            os.replace(tmp, final)
    except OSError as exc:
        if exc.filename is None and group.pending:  # some writers (Parquet) do not say which file failed
            exc.filename = str(group.pending[-1][1])
        raise
    finally:
        for tmp, _ in group.pending:
            tmp.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, path: str | Path, *, classes: Sequence[str] | None = None) -> Path:
    """Write `frame` atomically; `classes` (the label map) goes into the file's metadata (engine.labels)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True, metadata=metadata(classes))
    log.info("wrote %s (%d rows)", path, frame.height)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s", path)
    return Path(path)


def json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n"


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(json_text(obj), path)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays show up in metrics; JSON has no type for them.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def check_output(out: str | Path, *, option: str = "--out") -> Path:
    """`out` as a Path if it can name a Parquet file of rows (an augmenter's or the filter's output)."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{option} {out} is a folder; pass a file name such as {out / 'augmented.parquet'}.")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"{option} {out}: augmented rows are written as Parquet; use a .parquet file name.")
    return out


def check_output_dir(path: str | Path) -> Path:
    """Fail early, before any work, if `path` cannot hold outputs."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"output folder {path} is an existing file. Pass a folder path with --out-dir.")
    check_writable(path, option="--out-dir")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file: the same path after resolving symlinks, or a hard link."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: then only the resolved paths could match
        return False


PathsByOption = Mapping[str, str | Path | None] | Iterable[tuple[str, str | Path | None]]


def _pairs(paths: PathsByOption) -> list[tuple[str, str | Path | None]]:
    return list(paths.items()) if isinstance(paths, Mapping) else list(paths)


def refuse_overwrite(outputs: PathsByOption, inputs: PathsByOption) -> None:
    """Stop before any work if an output would replace one of the command's inputs.

    `outputs` and `inputs` pair the option that names a path (for the message) with the path (a mapping or
    pairs, since one --out-dir names several files); None is skipped. A symlink or a hard link to an input
    counts as the input: writing the output would replace its data.
    """
    inputs = _pairs(inputs)
    for out_option, out in _pairs(outputs):
        if out is None:
            continue
        for in_option, source in inputs:
            if source is not None and _same_file(Path(out), Path(source)):
                raise InputError(
                    f"{out_option} {out} is the same file as {in_option} {source}: writing it would replace the "
                    f"input. Choose another {out_option} path."
                )


def refuse_shared_outputs(outputs: PathsByOption) -> None:
    """Stop before any work if two outputs name one file: the one written second would replace the first."""
    named = [(option, out) for option, out in _pairs(outputs) if out is not None]
    for i, (option, out) in enumerate(named):
        for other, other_out in named[i + 1 :]:
            if _same_file(Path(out), Path(other_out)):
                raise InputError(
                    f"{other} {other_out} and {option} {out} are the same file: one output would replace the "
                    f"other. Give {other} a path of its own."
                )


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: str | Path, *, option: str = "--out") -> None:
    """Stop before any work if `folder` (or, when it does not exist yet, the folder that would hold it)
    cannot be written: a read-only folder or file system would otherwise fail after the work is done."""
    folder = Path(folder)
    base = _existing_parent(folder)
    if not base.is_dir():
        raise InputError(f"{option}: {base} is a file, so {folder} cannot be created as a folder. Choose another path.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(
            f"{option}: cannot write in {base} (permission denied or a read-only file system). Choose a folder you "
            "can write, or fix its permissions."
        )
    try:  # os.access does not see read-only mounts for root, nor every ACL: probe with a real file
        probe = base / f".hardaug-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"{option}: cannot write in {base} ({os.strerror(exc.errno or errno.EIO)}). "
            "Choose a folder you can write, or fix its permissions."
        ) from None


def check_writable_files(paths: Iterable[tuple[str, str | Path | None]]) -> None:
    """`check_writable` for the folder of every (option, output file) pair."""
    for option, path in paths:
        if path is not None:
            check_writable(Path(path).parent, option=option)
