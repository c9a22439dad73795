"""The job folder (engine/jobs.py): lock, verified parts, done marker. Every test attacks one way a resume
could go wrong: a second run at once, a part deleted, truncated or edited by hand, a truncated manifest,
another job's parts, and a job killed in its final writes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from engine.errors import InputError
from engine.jobs import DONE, MANIFEST, Job, JobLocked, fingerprint


def _frame(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"id": [str(i) for i in range(start, start + n)], "x": list(range(start, start + n))})


def _save_three(folder, key="k1"):
    with Job(folder, key) as job:
        for i in range(3):
            job.save_part(f"chunk_{i}", _frame(10, 10 * i), meta={"i": i})
    return folder


def test_fingerprint_depends_on_content_options_and_kind(tmp_path):
    a = fingerprint("eda", {"n": 4}, {"sources": _frame(5)})
    assert a == fingerprint("eda", {"n": 4}, {"sources": _frame(5)})
    assert a != fingerprint("eda", {"n": 5}, {"sources": _frame(5)})
    assert a != fingerprint("backtranslate", {"n": 4}, {"sources": _frame(5)})
    assert a != fingerprint("eda", {"n": 4}, {"sources": _frame(5, start=1)})
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"one")
    b = fingerprint("eda", {}, {"model": model})
    (model / "w.bin").write_bytes(b"two")
    assert b != fingerprint("eda", {}, {"model": model})


def test_parts_survive_a_rerun_with_their_meta(tmp_path):
    folder = _save_three(tmp_path / ".job")
    with Job(folder, "k1") as job:
        assert sorted(job.parts) == ["chunk_0", "chunk_1", "chunk_2"]
        assert job.parts["chunk_2"].meta == {"i": 2} and job.parts["chunk_2"].rows == 10
        assert job.read_parts()["x"].to_list() == list(range(30))


@pytest.mark.parametrize("attack", ["delete", "truncate", "edit"])
def test_a_missing_or_changed_part_is_named_and_redone(tmp_path, caplog, attack):
    folder = _save_three(tmp_path / ".job")
    victim = folder / "parts" / "chunk_1.parquet"
    if attack == "delete":
        victim.unlink()
    elif attack == "truncate":
        victim.write_bytes(victim.read_bytes()[:40])
    else:  # same size, other bytes
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), Job(folder, "k1") as job:
        assert sorted(job.parts) == ["chunk_0", "chunk_2"]  # chunk_1 is pending again, never silently skipped
    assert "chunk_1.parquet" in caplog.text
    assert not victim.exists()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [p["name"] for p in manifest["parts"]] == ["chunk_0", "chunk_2"]


def test_a_truncated_manifest_is_named_and_every_part_redone(tmp_path, caplog):
    folder = _save_three(tmp_path / ".job")
    manifest = folder / MANIFEST
    manifest.write_text(manifest.read_text()[:25])
    with caplog.at_level(logging.WARNING), Job(folder, "k1") as job:
        assert job.parts == {}
    assert str(manifest) in caplog.text
    assert not list((folder / "parts").glob("*")) if (folder / "parts").exists() else True


def test_files_the_manifest_does_not_list_are_removed(tmp_path):
    folder = _save_three(tmp_path / ".job")
    stray = folder / "parts" / "chunk_3.parquet"  # a run killed between writing a part and recording it
    _frame(3).write_parquet(stray)
    (folder / "parts" / ".chunk_4.parquet.tmp-123").write_bytes(b"half")
    with Job(folder, "k1") as job:
        assert "chunk_3" not in job.parts
    assert sorted(p.name for p in (folder / "parts").iterdir()) == [f"chunk_{i}.parquet" for i in range(3)]


def test_another_jobs_parts_are_refused_unless_restart(tmp_path):
    folder = _save_three(tmp_path / ".job")
    with pytest.raises(InputError, match="--restart"), Job(folder, "k2"):
        pass
    with Job(folder, "k2", restart=True) as job:
        assert job.parts == {}
    assert not (folder / "parts").exists()


def test_a_second_run_at_once_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / ".job"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from engine.jobs import Job
                with Job({str(folder)!r}, "k1"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobLocked, match=f"pid {holder.pid}"), Job(folder, "k1"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with Job(folder, "k1"):  # the kernel dropped the dead holder's lock
        pass


def test_done_marker_vouches_only_for_the_outputs_it_saw(tmp_path):
    out = tmp_path / "oof.parquet"
    folder = tmp_path / ".job"
    with Job(folder, "A", outputs=[out]) as job:
        assert job.finished() is None
        job.save_part("fold_0", _frame(4))
        _frame(4).write_parquet(out)
        job.finish({"accuracy": 0.5})
    assert not (folder / "parts").exists()
    with Job(folder, "A", outputs=[out]) as job:
        assert job.finished() == {"accuracy": 0.5}
    _frame(5).write_parquet(out)  # changed by hand: not trusted
    with Job(folder, "A", outputs=[out]) as job:
        assert job.finished() is None


def test_job_killed_in_its_final_writes_leaves_no_marker_for_another_job(tmp_path):
    """A finishes; B (another seed) opens the folder and is killed while writing its outputs; A again must
    not find "up to date" over B's files."""
    out = tmp_path / "oof.parquet"
    folder = tmp_path / ".job"
    with Job(folder, "A", outputs=[out]) as job:
        _frame(4).write_parquet(out)
        job.finish({"run": "A"})
    with Job(folder, "B", outputs=[out]) as job:
        assert job.finished() is None
        assert not (folder / DONE).exists()  # removed before B writes anything
        job.save_part("fold_0", _frame(6))
        _frame(6).write_parquet(out)  # ...and B is killed here, before finish()
    (tmp_path / ".oof.parquet.tmp-999").write_bytes(b"half-written")
    with pytest.raises(InputError, match="another"), Job(folder, "A", outputs=[out]):
        pass  # B's parts are there: A refuses them instead of trusting the folder
    with Job(folder, "A", outputs=[out], restart=True) as job:
        assert job.finished() is None
    assert not (tmp_path / ".oof.parquet.tmp-999").exists()


def test_shared_processes_keep_each_others_records_and_an_exclusive_run_waits_for_them(tmp_path):
    folder = tmp_path / ".job"
    with Job(folder, "k1", shared=True) as one, Job(folder, "k1", shared=True) as two:
        one.save_part("fold_0", _frame(3))
        two.save_part("fold_1", _frame(4))  # two opened before fold_0 was saved: the merge keeps it
        one.save_part("fold_2", _frame(5))
        with pytest.raises(JobLocked), Job(folder, "k1"):
            pass  # the assembling run is refused while fold processes run
        with pytest.raises(RuntimeError, match="finish"):
            one.finish()
    with Job(folder, "k1") as job:
        assert sorted(job.parts) == ["fold_0", "fold_1", "fold_2"]
        with pytest.raises(JobLocked), Job(folder, "k1", shared=True):
            pass
    with pytest.raises(ValueError, match="restart"):
        Job(folder, "k1", shared=True, restart=True)


def test_a_shared_process_of_another_job_is_refused_even_before_any_part(tmp_path):
    folder = tmp_path / ".job"
    with Job(folder, "A", shared=True), pytest.raises(InputError, match="another"), Job(folder, "B", shared=True):
        pass


def test_scratch_goes_with_the_parts(tmp_path):
    folder = tmp_path / ".job"
    with Job(folder, "k1") as job:
        job.scratch.mkdir()
        (job.scratch / "counts.npy").write_bytes(b"x")
        job.save_part("p", _frame(2))
    with Job(folder, "k1") as job:
        assert (job.scratch / "counts.npy").exists()  # same job: kept
    (folder / MANIFEST).unlink()
    with Job(folder, "k1") as job:
        assert not job.scratch.exists()  # no manifest vouches for it


def test_cache_parts_of_other_options_are_discarded_and_kept_parts_survive_finish(tmp_path, caplog):
    out = tmp_path / "results.json"
    folder = tmp_path / ".job"
    with Job(folder, "v1", stale="discard", outputs=[out], result_key="r1") as job:
        job.save_part("cell_a", _frame(2))
        job.save_part("cell_b", _frame(3))
        out.write_text("{}")
        job.finish({"n": 1}, keep=["cell_a"])
    with Job(folder, "v1", stale="discard", outputs=[out], result_key="r1") as job:
        assert job.finished() == {"n": 1}
    with Job(folder, "v1", stale="discard", outputs=[out], result_key="r2") as job:
        assert job.finished() is None and sorted(job.parts) == ["cell_a"]  # another result, same cells
    with caplog.at_level(logging.INFO), Job(folder, "v2", stale="discard") as job:
        assert job.parts == {}
    assert "discarding" in caplog.text


@pytest.mark.parametrize("name", ["../../victim.txt", "ABSOLUTE", "..", ""])
def test_a_part_named_outside_parts_is_a_corrupt_manifest_and_nothing_outside_is_deleted(tmp_path, caplog, name):
    folder = _save_three(tmp_path / "out" / ".job")
    victim = tmp_path / "victim.txt"
    victim.write_text("not the job's")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["parts"][1]["file"] = str(victim) if name == "ABSOLUTE" else name
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING), Job(folder, "k1") as job:
        assert job.parts == {}  # corrupt: every part redone, as for an unreadable manifest
    assert victim.read_text() == "not the job's"
    assert str(folder / MANIFEST) in caplog.text and "not a file name in parts/" in caplog.text


@pytest.mark.parametrize("which", ["folder", "parts", "scratch", "lock"])
def test_links_in_the_job_folder_are_refused_never_followed(tmp_path, which):
    folder = _save_three(tmp_path / ".job")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = {"folder": folder, "parts": folder / "parts", "scratch": folder / "scratch", "lock": folder / "lock"}[which]
    if which == "lock":
        link.unlink()
        link.symlink_to(target / "keep.txt")
    else:
        if link.exists():
            link.rename(tmp_path / "moved")
        link.symlink_to(target, target_is_directory=True)
    for restart in (False, True):
        with pytest.raises(InputError, match="symbolic link"), Job(folder, "k1", restart=restart):
            pass
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"] and (target / "keep.txt").read_text() == "keep"


def test_a_done_marker_that_lists_other_outputs_is_not_trusted(tmp_path, caplog):
    out = tmp_path / "oof.parquet"
    folder = tmp_path / ".job"
    with Job(folder, "A", outputs=[out]) as job:
        _frame(4).write_parquet(out)
        job.finish({"n": 4})
    done = json.loads((folder / DONE).read_text())
    (folder / DONE).write_text(json.dumps({**done, "outputs": {}}))
    with caplog.at_level(logging.WARNING), Job(folder, "A", outputs=[out]) as job:
        assert job.finished() is None
    assert "does not list this job's outputs" in caplog.text
