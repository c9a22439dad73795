"""The resume holes of issue 14, attacked through the real `hardaug eda` process on real reviews.

Every test runs `python -m engine.cli eda` as a user would, interrupts or disturbs it the way the issue found
broke today's resume (a second copy at once, a finished chunk deleted by hand, a truncated part or manifest,
another job's options into the same --out), and checks the output's structure against an uninterrupted run:
every source once, no duplicate ids, the same rows. Never the wording of generated text, never timings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from engine.augment.common import augment_file
from engine.augment.eda import EdaConfig, EdaJob

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "data" / "sample" / "train.csv"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SOURCES = 2000
CHUNK = 50  # 40 chunks: a run is still going when the test has seen its first parts saved


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sources") / "hard.parquet"
    pl.read_csv(SAMPLE).head(SOURCES).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory) -> pl.DataFrame:
    """What an uninterrupted run writes."""
    kept, _ = augment_file(EdaJob(EdaConfig(n=2)), sources, tmp_path_factory.mktemp("ref") / "aug.parquet")
    return kept


def _command(sources: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "eda", "--input", str(sources), "--out", str(out), "--n", "2",
            "--chunk-size", str(CHUNK), "--threads", "1", *extra]  # fmt: skip


def _run(sources: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(sources, out, *extra), env=ENV, capture_output=True, text=True, timeout=600)


def _manifest(out: Path) -> Path:
    return out.with_name(f".{out.name}.job") / "manifest.json"


def _recorded(out: Path) -> list[dict]:
    try:
        return json.loads(_manifest(out).read_text())["parts"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet


def _start_until(sources: Path, out: Path, parts: int) -> subprocess.Popen:
    """Start the command and return once its manifest records `parts` parts (the run still going); its
    stderr goes to OUT.log (a pipe nobody reads could fill and stop it)."""
    log = out.with_suffix(".log")
    with log.open("w") as stderr:
        proc = subprocess.Popen(_command(sources, out), env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 300
    while len(_recorded(out)) < parts:
        assert proc.poll() is None, f"the run ended before saving {parts} parts: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no part saved in 5 minutes"
        time.sleep(0.01)
    return proc


def _killed_after(sources: Path, out: Path, parts: int = 2) -> list[dict]:
    """A run SIGKILLed once it has saved `parts` chunks; the parts its manifest records."""
    proc = _start_until(sources, out, parts)
    proc.kill()
    proc.wait()
    assert not out.exists()
    return _recorded(out)


def _assert_complete(out: Path, reference: pl.DataFrame, sources: Path) -> None:
    kept = pl.read_parquet(out)
    assert kept["id"].is_unique().all(), "duplicate ids"
    assert set(kept["source_id"]) == set(reference["source_id"]), "sources missing or foreign"
    assert set(reference["source_id"]) <= set(pl.read_parquet(sources)["id"].cast(pl.String))
    assert kept.equals(reference)
    assert not list(out.with_name(f".{out.name}.job").glob("parts/*"))  # finished: the parts are gone


@pytest.mark.slow
def test_a_second_copy_at_once_is_refused_naming_the_holder(sources, reference, tmp_path):
    out = tmp_path / "aug.parquet"
    first = _start_until(sources, out, 1)
    try:
        first.send_signal(signal.SIGSTOP)  # holds its lock, saves nothing more while the second one tries
        second = _run(sources, out)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
        rc = first.wait(timeout=600)
    assert rc == 0, out.with_suffix(".log").read_text()[-2000:]
    _assert_complete(out, reference, sources)


@pytest.mark.slow
def test_a_finished_chunk_deleted_by_hand_is_redone(sources, reference, tmp_path):
    out = tmp_path / "aug.parquet"
    recorded = _killed_after(sources, out)
    victim = _manifest(out).parent / "parts" / recorded[0]["file"]
    victim.unlink()
    resumed = _run(sources, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert str(victim) in resumed.stderr  # named in the warning
    _assert_complete(out, reference, sources)


@pytest.mark.parametrize("what", [pytest.param("part", marks=pytest.mark.slow), "manifest"])
def test_a_truncated_part_or_manifest_is_named_and_redone(sources, reference, tmp_path, what):
    out = tmp_path / "aug.parquet"
    recorded = _killed_after(sources, out)
    victim = _manifest(out) if what == "manifest" else _manifest(out).parent / "parts" / recorded[-1]["file"]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    resumed = _run(sources, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert str(victim) in resumed.stderr and "Traceback" not in resumed.stderr
    _assert_complete(out, reference, sources)


@pytest.mark.slow
def test_other_options_into_the_same_out_are_refused_while_parts_are_there(sources, reference, tmp_path):
    out = tmp_path / "aug.parquet"
    recorded = _killed_after(sources, out)
    other = _run(sources, out, "--n", "3")
    assert other.returncode == 2 and "--restart" in other.stderr and "Traceback" not in other.stderr
    assert not out.exists() and _recorded(out) == recorded  # the first job's parts are untouched
    restarted = _run(sources, out, "--n", "3", "--restart")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    kept = pl.read_parquet(out)
    assert kept["id"].is_unique().all()
    assert kept.group_by("source_id").len()["len"].max() <= 3  # the n=3 job's rows only, each source once
    assert set(reference["source_id"]) <= set(kept["source_id"])
    resumed = _run(sources, out)  # and the first job again: a job of its own, written anew
    assert resumed.returncode == 0
    _assert_complete(out, reference, sources)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_manifest(out: Path, edit) -> None:
    manifest = json.loads(_manifest(out).read_text())
    edit(manifest["parts"])
    _manifest(out).write_text(json.dumps(manifest))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_manifest_entry_outside_parts_deletes_nothing(sources, reference, tmp_path, how):
    """Issue 22: a part named `../../victim.txt` (or an absolute path) was unlinked as a "changed part"."""
    out = tmp_path / "aug.parquet"
    _killed_after(sources, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("not hardaug's")
    name = "../../victim.txt" if how == "relative" else str(victim)
    assert (_manifest(out).parent / "parts" / name).resolve() == victim.resolve()

    def point_at_victim(parts):
        parts[0]["file"] = name

    _rewrite_manifest(out, point_at_victim)
    resumed = _run(sources, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert victim.read_text() == "not hardaug's"
    assert str(_manifest(out)) in resumed.stderr and "not a file name in parts/" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    _assert_complete(out, reference, sources)


@pytest.mark.slow
def test_a_parts_folder_that_is_a_link_is_refused_and_its_target_untouched(sources, tmp_path):
    out = tmp_path / "aug.parquet"
    _killed_after(sources, out)
    parts = _manifest(out).parent / "parts"
    elsewhere = tmp_path / "elsewhere"
    parts.rename(elsewhere)
    (elsewhere / "someone_elses.txt").write_text("keep me")  # the stray clean-up deleted such files
    parts.symlink_to(elsewhere, target_is_directory=True)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    for extra in ((), ("--restart",)):
        refused = _run(sources, out, *extra)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr and "symbolic link" in refused.stderr and str(parts) in refused.stderr
        assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before
        assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("forged", ["digest", "digest and record"])
def test_a_part_swapped_for_another_is_detected(sources, reference, tmp_path, forged):
    """Issue 22: a part replaced by a copy of another, its size and sha256 updated in the manifest, gave 38
    ids twice and exit 0. Forging the recorded sources too leaves two parts holding the same sources."""
    out = tmp_path / "aug.parquet"
    recorded = _killed_after(sources, out)
    parts = _manifest(out).parent / "parts"
    swapped = parts / recorded[1]["file"]
    swapped.write_bytes((parts / recorded[0]["file"]).read_bytes())

    def follow_the_swap(entries):
        entries[1]["size"], entries[1]["sha256"] = swapped.stat().st_size, _sha256(swapped)
        if forged == "digest and record":
            entries[1]["meta"] = entries[0]["meta"]

    _rewrite_manifest(out, follow_the_swap)
    resumed = _run(sources, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert str(swapped) in resumed.stderr and "Traceback" not in resumed.stderr
    _assert_complete(out, reference, sources)


@pytest.mark.slow
def test_a_forged_done_marker_listing_no_outputs_is_not_trusted(sources, reference, tmp_path):
    out = tmp_path / "aug.parquet"
    _killed_after(sources, out)
    done = _manifest(out).parent / "done.json"
    key = json.loads(_manifest(out).read_text())["fingerprint"]
    done.write_text(json.dumps({"fingerprint": key, "outputs": {}, "summary": {"counts": {}}}))
    resumed = _run(sources, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr and f"{done} does not list this job's outputs" in resumed.stderr
    _assert_complete(out, reference, sources)
