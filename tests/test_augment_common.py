"""The augmented schema and resumable chunked output shared by every augmenter."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from engine.augment.common import (
    AUGMENTED_SCHEMA,
    AugmentedOutput,
    Generated,
    job_fingerprint,
    load_sources,
    to_rows,
)
from engine.errors import InputError
from engine.jobs import JobLocked


@pytest.fixture
def sources(tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "hard.parquet"
    pl.DataFrame(
        {
            "id": [10, 11, 12],
            "text": ["재밌는 영화였다", "별로였어요", "그냥 그래"],
            "label": [3, 1, 2],
            "hardness": [0.9, 0.8, 0.7],
        }
    ).write_parquet(path)
    return load_sources(path)


def _generated() -> list[Generated]:
    return [
        Generated(0, "x.0", "정말 재밌는 영화", {"pivot": "fun film"}),
        Generated(0, "x.1", "재밌는 영화였다"),  # identical to the source
        Generated(1, "x.0", "  "),  # empty
        Generated(1, "x.1", "별로였음"),
        Generated(2, "-", "", drop_reason="too_short"),
    ]


def test_rows_follow_the_schema_and_count_drops(sources):
    rows = to_rows(sources, _generated(), method="test", model="m", params={"p": 1})
    assert rows["id"].to_list()[0] == "10:test:x.0"
    assert rows["drop_reason"].to_list() == [None, "identical_to_source", "empty", None, "too_short"]
    assert rows["hardness"].to_list()[:2] == [0.9, 0.9] and rows["label"].to_list()[3] == 1


def test_chunks_resume_and_finish_in_input_order(sources, tmp_path: Path):
    out = tmp_path / "aug.parquet"
    key = job_fingerprint(sources, "test", "m", {"p": 1})
    rows = to_rows(sources, _generated(), method="test", model="m", params={"p": 1})
    with AugmentedOutput(out, fingerprint=key) as writer:
        # second chunk first: the final file must still follow the input order
        writer.write_chunk(rows.filter(pl.col("source_id") != "10"), ["11", "12"])
    assert not out.exists()
    with AugmentedOutput(out, fingerprint=key) as resumed:
        assert resumed.done_sources() == {"11", "12"}
        resumed.write_chunk(rows.filter(pl.col("source_id") == "10"), ["10"])
        kept, counts = resumed.finish()
    assert kept.columns == list(AUGMENTED_SCHEMA)
    assert kept["id"].to_list() == ["10:test:x.0", "11:test:x.1"]
    assert counts == {"generated": 5, "empty": 1, "identical_to_source": 1, "too_short": 1, "kept": 2}
    assert pl.read_parquet(out).equals(kept)
    assert not (resumed.folder / "parts").exists()


def test_variants_keep_the_order_they_were_made_in(sources, tmp_path: Path):
    out = tmp_path / "aug.parquet"
    made = [Generated(0, str(v), f"변형 {v}") for v in range(12)]  # as strings "10" < "2"
    rows = to_rows(sources, made, method="test", model="m", params={})
    with AugmentedOutput(out, fingerprint="k") as writer:
        writer.write_chunk(rows, ["10", "11", "12"])
        kept, _ = writer.finish()
    assert kept["variant"].to_list() == [str(v) for v in range(12)]


def test_sources_seen_without_outputs_are_remembered(sources, tmp_path: Path):
    out = tmp_path / "aug.parquet"
    with AugmentedOutput(out, fingerprint="k") as writer:
        writer.write_chunk(to_rows(sources, [], method="t", model="m", params={}), ["10", "11"])
    with AugmentedOutput(out, fingerprint="k") as again:
        assert again.done_sources() == {"10", "11"}


def test_a_finished_job_is_found_by_its_fingerprint_alone(sources, tmp_path: Path):
    out = tmp_path / "aug.parquet"
    rows = to_rows(sources, _generated(), method="test", model="m", params={})
    with AugmentedOutput(out, fingerprint="a") as writer:
        assert writer.finished() is None
        writer.write_chunk(rows, ["10", "11", "12"])
        kept, counts = writer.finish()
    with AugmentedOutput(out, fingerprint="a") as again:
        found = again.finished()
        assert found is not None and found[0].equals(kept) and found[1] == counts
        assert not (again.folder / "parts").exists()  # nothing opened for a finished job
    for key, restart in (("b", False), ("a", True), ("a", False)):  # the last: restart dropped the marker
        with AugmentedOutput(out, fingerprint=key, restart=restart) as other:
            assert other.finished() is None


def test_parts_of_another_job_are_refused(tmp_path: Path, sources):
    out = tmp_path / "aug.parquet"
    with AugmentedOutput(out, fingerprint="a") as writer:
        writer.write_chunk(to_rows(sources, [], method="t", model="m", params={}), ["10"])
    with pytest.raises(InputError, match=r"another augmentation job.*--restart"), AugmentedOutput(out, fingerprint="b"):
        pass
    with AugmentedOutput(out, fingerprint="b", restart=True) as restarted:
        assert restarted.done_sources() == set()


def test_a_job_that_never_wrote_a_chunk_leaves_nothing(tmp_path: Path):
    out = tmp_path / "aug.parquet"
    with AugmentedOutput(out, fingerprint="a") as writer:  # e.g. the engine then fails to open
        pass
    assert [p.name for p in tmp_path.iterdir()] == [writer.folder.name]  # the job folder, with its lock only
    assert [p.name for p in writer.folder.iterdir()] == ["lock"]
    with AugmentedOutput(out, fingerprint="b"):  # nothing of job a to refuse
        pass


def test_a_second_writer_at_once_is_refused(tmp_path: Path):
    out = tmp_path / "aug.parquet"
    with (
        AugmentedOutput(out, fingerprint="a"),
        pytest.raises(JobLocked, match="another hardaug run"),
        AugmentedOutput(out, fingerprint="a"),
    ):
        pass


def test_chunks_of_an_older_hardaug_are_removed_with_a_warning(tmp_path: Path, sources, caplog):
    folder = tmp_path / "runs"
    old = folder / ".aug.parquet.parts"
    old.mkdir(parents=True)
    to_rows(sources, [], method="t", model="m", params={}).write_parquet(old / "chunk_00000.parquet")
    (folder / ".aug.parquet.job.json").write_text('{"fingerprint": "a"}')
    with caplog.at_level(logging.WARNING), AugmentedOutput(folder / "aug.parquet", fingerprint="a") as writer:
        assert writer.done_sources() == set()
    assert str(old) in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == [".aug.parquet.job"]


def test_bad_output_paths(tmp_path: Path):
    with pytest.raises(InputError, match="is a folder"):
        AugmentedOutput(tmp_path, fingerprint="a")
    with pytest.raises(InputError, match=r"\.parquet"):
        AugmentedOutput(tmp_path / "aug.csv", fingerprint="a")
    assert list(tmp_path.iterdir()) == []  # refused before any folder is made


def test_finish_refuses_parts_that_do_not_cover_the_sources_once(sources, tmp_path: Path):
    """The last line of defence against a tampered job folder: nothing is written when the parts hold
    sources the job does not have, miss some, or hold a row id twice."""
    out = tmp_path / "aug.parquet"
    rows = to_rows(sources, _generated(), method="t", model="m", params={})
    with AugmentedOutput(out, fingerprint="k") as writer:
        writer.write_chunk(rows, ["10", "11", "12"])
        with pytest.raises(InputError, match=r"1 sources that are not in the input.*--restart"):
            writer.finish(["10", "11"])
        with pytest.raises(InputError, match="miss 1 sources"):
            writer.finish(["10", "11", "12", "13"])
        with pytest.raises(RuntimeError, match="repeats sources"):
            writer.write_chunk(rows.filter(pl.col("source_id") == "10"), ["10"])
    twice = pl.concat([rows.head(1), rows.head(1)])
    with AugmentedOutput(tmp_path / "b.parquet", fingerprint="k") as writer:
        writer.write_chunk(twice, ["10"])
        with pytest.raises(InputError, match="2 augmented rows whose id another row has too"):
            writer.finish(["10"])
    assert not out.exists() and not (tmp_path / "b.parquet").exists()


def test_a_part_that_is_not_parquet_but_matches_its_forged_digest_is_redone(sources, tmp_path: Path, caplog):
    import hashlib
    import json

    out = tmp_path / "aug.parquet"
    rows = to_rows(sources, _generated(), method="t", model="m", params={})
    with AugmentedOutput(out, fingerprint="k") as writer:
        writer.write_chunk(rows, ["10", "11", "12"])
    folder = tmp_path / ".aug.parquet.job"
    manifest = json.loads((folder / "manifest.json").read_text())
    part = folder / "parts" / manifest["parts"][0]["file"]
    part.write_bytes(b"not parquet at all")
    manifest["parts"][0].update(size=part.stat().st_size, sha256=hashlib.sha256(part.read_bytes()).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING), AugmentedOutput(out, fingerprint="k") as again:
        assert again.done_sources() == set()
    assert f"{part}: unreadable as a chunk of augmented rows" in caplog.text and not part.exists()
