"""One job folder: what every resumable command (oof, eda, backtranslate, paraphrase, filter, compare, the
pipeline's stages) shares to save work as it finishes, resume it, and never trust what it cannot verify.

A job is identified by its fingerprint: content digests of its inputs, its options, and the hardaug and
polars versions (`fingerprint`). Its folder (`OUT_DIR/.job` of oof and compare, `.augmented.parquet.job`
beside a file output, `<stage folder>/.stage` of a pipeline stage) holds:

- `lock`: held with `flock` while the job runs. A second command on the same output stops at once and
  says which process holds it (pid, host, command, start time); the kernel drops the lock when the holder
  dies, so a killed job never blocks the next one.
- `manifest.json`: the fingerprint and every saved part with its row count, size and sha256. Written
  atomically after each part, so a part that is on disk but not in the manifest was never finished.
- `parts/`: the saved parts. On open, every recorded part is checked against its size and sha256: a part
  that is missing, truncated or changed is named in a warning and redone; files the manifest does not
  list (a kill between write and record, temporary files of killed writes) are removed. An unreadable
  manifest is named and all parts are redone. Parts of another job (other inputs or options) are refused
  unless `restart`.
- `done.json`: written last, after every output, with the sha256 of each output. `finished()` trusts it
  only if the fingerprint is this job's, it lists exactly the outputs the job was opened with, and every
  output still has that digest. A job that is not finished
  removes an older `done.json` before it writes any output, so a job killed in its final writes never
  leaves another job's marker vouching for its half-written files.
- `scratch/`: what the producer keeps between runs besides parts (oof's shared n-gram counts, a checkpoint
  while a fold trains); tied to the manifest: removed with the parts on restart, on finish, and when the
  manifest is missing or unreadable.

Everything in the folder is untrusted input (a hand edit, a copy from elsewhere, a forgery): nothing it says
ever removes a file outside the folder. A part's `file` must be a plain file name (no folder, no `..`): a
manifest naming anything else is corrupt, named in a warning, and all its parts are redone (as for an
unreadable manifest: redoing costs time, never correctness, and touches only `parts/`). The folder itself,
`parts/`, `scratch/` and the lock files must not be symbolic links: a link there is refused, never followed
(the clean-up of `parts/` would otherwise delete the files of the link's target). Parts cannot prove they
hold what they were saved for (a part swapped with another, its size and sha256 updated in the manifest,
passes the checks above), so a producer records what a part covers in its `meta` (`ids_digest`: the source
ids of an augmenter's chunk) or knows it (an oof fold's held-out rows) and checks it on resume and on
assembly (`drop_part` redoes a part that fails).

Several processes may share one job (`shared=True`: `hardaug oof --only-folds`, one process per GPU on
disjoint folds, or Ray tasks): each holds a shared lock, so they run together while a run that takes the
exclusive lock (the one that assembles the result) is refused until they end, and the other way round. Every
change of the manifest is then made under a short exclusive lock on `manifest.lock`, re-reading and merging
the manifest first, so no process loses another's records; a part is written under that lock too, so the
clean-up of unlisted files never removes a part another process is recording.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine import __version__
from engine.errors import InputError
from engine.io import atomic_path, json_text

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DONE = "done.json"
LOCK = "lock"
MANIFEST_LOCK = "manifest.lock"
PARTS = "parts"
SCRATCH = "scratch"
_UNKNOWN = object()  # Job._done before the done marker was read
_CHUNK = 1 << 20


def ids_digest(ids: Iterable[object]) -> str:
    """A digest of a set of ids (order and repeats ignored): what a part records of the rows it covers."""
    digest = hashlib.sha256()
    for value in sorted({str(i) for i in ids}):
        digest.update(value.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def first_line(exc: BaseException) -> str:
    """An exception's first line (polars' messages run on with hints), or its type when it has no message."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def frame_digest(frame: pl.DataFrame) -> str:
    """A digest of a frame's content (column names, types and values, in row order)."""
    digest = hashlib.sha256(json.dumps({name: str(dtype) for name, dtype in frame.schema.items()}).encode())
    digest.update(frame.hash_rows(seed=11).to_numpy().tobytes())
    return digest.hexdigest()


def fingerprint(kind: str, options: Mapping[str, Any], inputs: Mapping[str, pl.DataFrame | str | Path | None]) -> str:
    """The identity of a job: what it does (`kind`, `options`: JSON-able), what it reads (`inputs`: frames,
    files or folders by content, None for an input not given), and the code that does it (the hardaug and
    polars versions: polars' row hash may change between its releases, which only makes a job run anew)."""
    digest = hashlib.sha256(
        json.dumps(
            {"kind": kind, "options": options, "hardaug": __version__, "polars": pl.__version__},
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        ).encode()
    )
    for name in sorted(inputs):
        value = inputs[name]
        digest.update(f"\0{name}\0".encode())
        if value is None:
            digest.update(b"none")
        elif isinstance(value, pl.DataFrame):
            digest.update(frame_digest(value).encode())
        else:
            digest.update(path_digest(Path(value)).encode())
    return digest.hexdigest()[:24]


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's every file (name and content)."""
    if path.is_dir():  # a model folder: every file's name and content
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path)}\0{file_digest(file)}\0".encode())
        return digest.hexdigest()
    return file_digest(path)


@dataclass(frozen=True)
class Part:
    """One saved part as the manifest records it; `meta` holds what the part's producer wants back on
    resume (a fold's metrics, the source ids a chunk processed)."""

    name: str
    file: str
    rows: int
    size: int
    sha256: str
    meta: dict


class JobLocked(InputError):
    """Another live process holds the job's lock."""


def refuse_link(path: Path, what: str = "folder") -> None:
    """A job's folder, `parts/`, `scratch/` or lock must be its own, not a symbolic link (see the module
    docstring), and a folder must be a folder: one line, before anything in it is read, written or removed."""
    if path.is_symlink():
        raise InputError(
            f"{path} is a symbolic link (to {os.readlink(path)}): hardaug keeps a job's files in a {what} of its "
            f"own and never follows a link there, so that nothing outside it is changed. Remove the link (rm "
            f"{path}) and run again."
        )
    if what == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file where hardaug keeps a job folder: move it away and run again.")


class Job:
    """The job folder of one resumable job; use as a context manager (it holds the lock inside `with`).

    `shared`: one of several processes of the same job at once (see the module docstring); they save parts,
    never finish. `stale="discard"`: parts of another fingerprint are removed instead of refused, for a job
    whose parts name their own content (compare's cells). `result_key`: what the done marker must also
    match when one folder of parts serves results of several option sets (compare's cells serve any seeds).

    with Job(out_dir / ".job", key, restart=args.restart, outputs=[out_dir / "oof.parquet"]) as job:
        if (summary := job.finished()) is not None:
            return summary
        for name in todo:
            if name not in job.parts:
                job.save_part(name, compute(name), meta={...})
        ...write the outputs...
        job.finish({"rows": n})
    """

    def __init__(
        self,
        folder: str | Path,
        key: str,
        *,
        restart: bool = False,
        outputs: Iterable[str | Path] = (),
        what: str = "job",
        shared: bool = False,
        stale: str = "refuse",
        result_key: str | None = None,
    ) -> None:
        if shared and restart:
            raise ValueError("a shared job cannot restart: it would delete the parts of the other processes")
        if stale not in ("refuse", "discard"):
            raise ValueError(f"stale must be 'refuse' or 'discard', got {stale!r}")
        self.folder = Path(folder)
        self.key = key
        self.restart = restart
        self.outputs = [Path(p) for p in outputs]
        self.what = what  # how messages name the parts' owner ("oof job", "eda job")
        self.shared = shared
        self.stale = stale
        self.result_key = result_key
        self.parts: dict[str, Part] = {}
        self._lock_fd: int | None = None
        # finished()'s answer while the lock is held: nobody else can finish the job or remove its marker then,
        # so the outputs are hashed once per run, not once per caller that asks
        self._done: object = _UNKNOWN  # dict (the summary), None (not finished) or _UNKNOWN

    @property
    def scratch(self) -> Path:
        """A folder for what the producer keeps between runs besides parts (created on demand)."""
        return self.folder / SCRATCH

    # -- lifetime -------------------------------------------------------------------------------------------
    def __enter__(self) -> Job:
        refuse_link(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._open()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._unlock()

    def _lock(self) -> None:
        self._lock_fd = _acquire(self.folder / LOCK, self._target(), shared=self.shared)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            _release(self._lock_fd)
            self._lock_fd = None
        self._done = _UNKNOWN

    def _target(self) -> Path:
        return self.outputs[0] if self.outputs else self.folder

    @contextlib.contextmanager
    def _manifest_lock(self):
        """Held while the manifest is read and changed in shared mode (short: one part's write at most)."""
        if not self.shared:
            yield
            return
        fd = _open_lock_file(self.folder / MANIFEST_LOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _open(self) -> None:
        refuse_link(self.folder / PARTS)
        refuse_link(self.folder / SCRATCH)
        if self.shared:
            with self._manifest_lock():
                self._done = self._read_done()
                if self._done is not None:
                    return
                self.parts = self._read_manifest()
                if not (self.folder / MANIFEST).exists():  # claim the folder: another job's process is refused
                    self._write_manifest(self.parts)
            return
        if self.restart:
            (self.folder / DONE).unlink(missing_ok=True)
            self._clear_parts()
        self._done = self._read_done()
        if self._done is not None:
            return
        # not finished: an older marker must not vouch for the outputs this job is about to write
        (self.folder / DONE).unlink(missing_ok=True)
        for output in self.outputs:  # temporary files of writes that were killed (engine.io.atomic_path)
            for tmp in output.parent.glob(f".{output.name}.tmp-*"):
                if tmp.is_symlink() or not tmp.is_dir():  # a file (or a link: never what it points to)
                    tmp.unlink(missing_ok=True)
        self.parts = self._read_manifest()

    def _clear_parts(self) -> None:
        shutil.rmtree(self.folder / PARTS, ignore_errors=True)
        shutil.rmtree(self.folder / SCRATCH, ignore_errors=True)
        (self.folder / MANIFEST).unlink(missing_ok=True)
        self.parts = {}

    # -- parts ----------------------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Part]:
        path = self.folder / MANIFEST
        parts_dir = self.folder / PARTS
        if not path.exists():
            self._clear_parts()
            return {}
        try:
            found_key, recorded = _parse_manifest(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable or corrupt (%s): its parts cannot be trusted and are redone", path, exc)
            self._clear_parts()
            return {}
        if found_key != self.key and self.stale == "discard":
            log.info("%s: discarding the saved parts of another %s (fingerprint %s)", self.folder, self.what, found_key)
            self._clear_parts()
            return {}
        if found_key != self.key:
            raise InputError(
                f"{self.folder} holds the saved parts of a different job (another {self.what} with other input, "
                f"model or options: fingerprint {found_key}, this one is {self.key}). Pass --restart to discard "
                "them, or choose another output."
            )
        kept: dict[str, Part] = {}
        for part in recorded:
            file = parts_dir / part.file
            problem = _check_part(file, part)
            if problem is None:
                kept[part.name] = part
            else:
                log.warning("%s: %s; the part is redone", file, problem)
                _remove(file)
        listed = {part.file for part in kept.values()}
        for stray in parts_dir.iterdir() if parts_dir.is_dir() else ():
            if stray.name not in listed:  # written but never recorded: a run killed between the two
                _remove(stray)
        if len(kept) != len(recorded):
            self._write_manifest(kept)
        if kept:
            log.info("%s: resuming with %d saved parts", self.folder, len(kept))
        return kept

    def _write_manifest(self, parts: Mapping[str, Part]) -> None:
        manifest = {"fingerprint": self.key, "parts": [vars(p) for p in parts.values()]}
        _write_quietly(json_text(manifest), self.folder / MANIFEST)

    def part_path(self, name: str, suffix: str = ".parquet") -> Path:
        return self.folder / PARTS / f"{name}{suffix}"

    def save_part(self, name: str, frame: pl.DataFrame, *, meta: dict | None = None) -> Part:
        """Save `frame` as the part `name` (atomically) and record it in the manifest."""
        path = self.part_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Serialized in memory, written by Python: a full disk is then an OSError the CLI can name, where
        # polars may report it as a Parquet "transport error" (when the footer is what does not fit).
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        with self._manifest_lock():
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getvalue())
            log.debug("saved part %s (%d rows)", path, frame.height)
            return self._record(name, path, rows=frame.height, meta=meta)

    def _record(self, name: str, path: Path, *, rows: int, meta: dict | None) -> Part:
        part = Part(name, path.name, rows, path.stat().st_size, file_digest(path), dict(meta or {}))
        if self.shared:  # the other processes' records since this one opened the folder are kept
            self.parts = {**self._recorded_by_others(), **self.parts}
        self.parts[name] = part
        self._write_manifest(self.parts)
        return part

    def _recorded_by_others(self) -> dict[str, Part]:
        try:
            found_key, parts = _parse_manifest((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        recorded = {part.name: part for part in parts}
        if found_key != self.key:
            raise InputError(
                f"{self.folder} now holds the saved parts of another {self.what} (fingerprint {found_key}, this "
                f"one is {self.key}): another run with other inputs or options shares it. Choose another output."
            )
        return recorded

    def drop_part(self, name: str, problem: str) -> None:
        """Forget and remove the part `name`, which its producer found does not hold what it was saved for
        (`problem` says how): named in a warning, and redone like a part that was changed on disk."""
        with self._manifest_lock():
            if self.shared:
                self.parts = {**self._recorded_by_others(), **self.parts}
            part = self.parts.pop(name, None)
            if part is None:
                return
            file = self.folder / PARTS / part.file
            log.warning("%s: %s; the part is redone", file, problem)
            _remove(file)
            self._write_manifest(self.parts)

    def read_part(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.folder / PARTS / self.parts[name].file)

    def read_parts(self, names: Iterable[str] | None = None) -> pl.DataFrame | None:
        """The named parts (default: all, in the order they were saved) as one frame; None if there are none."""
        files = [self.folder / PARTS / self.parts[n].file for n in (self.parts if names is None else names)]
        return pl.read_parquet(files) if files else None

    # -- the end ---------------------------------------------------------------------------------------------
    def finished(self) -> dict | None:
        """The summary this very job wrote when it finished here, if its outputs are still what it wrote."""
        if self._done is not _UNKNOWN:
            return self._done
        return self._read_done()

    def _read_done(self) -> dict | None:
        path = self.folder / DONE
        try:
            done = json.loads(path.read_text(encoding="utf-8"))
            if done["fingerprint"] != self.key or done.get("result") != self.result_key:
                return None
            written, summary = done["outputs"], done["summary"]
            expected = {str(p) for p in self.outputs}
            # A forged or foreign marker would vouch for files this job never wrote, or for none. A job opened
            # without outputs (a pipeline stage: its outputs are what the stage leaves) trusts those listed.
            if (
                not isinstance(written, dict)
                or not isinstance(summary, dict)
                or (expected and set(written) != expected)
            ):
                log.warning(
                    "%s does not list this job's outputs (%s): it is not trusted and the job runs again",
                    path,
                    ", ".join(sorted(expected)) or "none",
                )
                return None
            for name, record in written.items():
                file = Path(name)
                if not file.is_file() or file.stat().st_size != record["size"] or file_digest(file) != record["sha256"]:
                    log.warning("%s changed since the job that wrote it finished: the job runs again", file)
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return summary

    def finish(self, summary: Mapping[str, Any] | None = None, *, keep: Iterable[str] | None = None) -> None:
        """Mark the job done (after every output is written): the done marker with the outputs' digests,
        then the parts are removed; `keep` names parts to keep for later jobs instead (compare's cells: a
        rerun with more seeds reuses them), the others are removed."""
        if self.shared:
            raise RuntimeError("a shared job saves parts; the run that holds the job alone finishes it")
        missing = [str(p) for p in self.outputs if not p.is_file()]
        if missing:
            raise RuntimeError(f"finish() before every output was written: {missing}")
        outputs = {str(p): {"size": p.stat().st_size, "sha256": file_digest(p)} for p in self.outputs}
        done = {"fingerprint": self.key, "outputs": outputs, "summary": dict(summary or {})}
        if self.result_key is not None:
            done["result"] = self.result_key
        _write_quietly(json_text(done), self.folder / DONE)
        self._done = _UNKNOWN  # read back if asked, as JSON gives it
        if keep is None:
            self._clear_parts()
            return
        keep = set(keep)
        kept = {name: part for name, part in self.parts.items() if name in keep}
        for name, part in self.parts.items():
            if name not in kept:
                (self.folder / PARTS / part.file).unlink(missing_ok=True)
        self.parts = kept
        self._write_manifest(kept)


@contextlib.contextmanager
def locked(folder: str | Path, target: str | Path):
    """Hold `folder`/lock alone while the block runs (a job of jobs: `hardaug run` on OUT); a second holder is
    refused with JobLocked naming this one. `target` is what the message says is being written."""
    refuse_link(Path(folder))
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = _acquire(Path(folder) / LOCK, Path(target), shared=False)
    try:
        yield
    finally:
        _release(fd)


def _open_lock_file(path: Path) -> int:
    """The lock file, never through a link: the holder's record is written into it, which through a link
    would overwrite the link's target."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        refuse_link(path, "lock file")
        raise


def _acquire(path: Path, target: Path, *, shared: bool) -> int:
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise JobLocked(
            f"{target} is being written by another hardaug run ({_holder(path)}). Two runs must not share an "
            "output: wait for that one to finish, stop it, or choose another output."
        ) from None
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or "python",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if shared:  # several holders: each says who it is, the last one to start is named
        holder["shared"] = True
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return fd


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _write_quietly(text: str, path: Path) -> None:
    """The job folder's own bookkeeping (manifest, done marker): atomic like every output, but logged at
    DEBUG, so a run's log lists what it produced, not one line per saved part."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.debug("wrote %s", path)


def _parse_manifest(text: str) -> tuple[str, list[Part]]:
    """The fingerprint and parts of a manifest; ValueError (naming the entry), KeyError or TypeError when it
    is not one this module wrote: a part's file must be a plain name inside `parts/`, each named once."""
    manifest = json.loads(text)
    found_key = manifest["fingerprint"]
    parts = [Part(**fields) for fields in manifest["parts"]]
    files: set[str] = set()
    for part in parts:
        if not _plain_name(part.file):
            raise ValueError(f"part {part.name!r} names the file {part.file!r}, which is not a file name in parts/")
        if part.file in files:
            raise ValueError(f"two parts name the file {part.file!r}")
        if not isinstance(part.name, str) or not isinstance(part.meta, dict):
            raise ValueError(f"part {part.name!r} is not a part this version of hardaug wrote")
        files.add(part.file)
    return found_key, parts


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _remove(path: Path) -> None:
    """Remove `path` (inside the job folder) whatever it is; a link goes, never what it points to."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _check_part(file: Path, part: Part) -> str | None:
    if file.is_symlink():
        return "a symbolic link, not a part hardaug wrote"
    if not file.is_file():
        return f"missing (the manifest records {part.rows} rows)"
    size = file.stat().st_size
    if size != part.size:
        return f"{size} bytes where {part.size} were saved (truncated or changed)"
    if file_digest(file) != part.sha256:
        return "its content changed since it was saved (sha256 differs)"
    return None


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        holder = json.loads(lock.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
    return "its holder did not say who it is"
