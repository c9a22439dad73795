"""A user's data is never lost or silently wrong: no output replaces an input, string labels never get
renumbered behind the user's back, a command's outputs appear together or not at all, a label-model file
never runs code, and ordinary faults (read-only folders, full disks, wrong columns) end in one clear line.

Every test runs the CLI as a user does and checks the message, that the inputs are byte-for-byte unchanged
and that no output appeared."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.io import write_parquet

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample"
NAMES = ["neg", "strong neg", "pos", "strong pos"]  # sorted: neg, pos, strong neg, strong pos


# ------------------------------------------------------------------------------------------------ helpers
def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def refused(code: int, capsys, *patterns: str, exit_code: int = 2) -> str:
    """The command stopped with one error line (progress bars aside) holding every pattern."""
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("hardaug ")]
    assert len(errors) == 1, f"expected one error line, got {err!r}"
    for pattern in patterns:
        assert pattern in errors[0], f"{pattern!r} not in {errors[0]!r}"
    return errors[0]


def unchanged(before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(400).write_csv(path)
    return path


def augmented_rows(train: Path, n: int = 30) -> pl.DataFrame:
    """Augmented rows as the augmenters write them: light edits of the first `n` training texts."""
    src = pl.read_csv(train).head(n)
    return pl.DataFrame(
        {
            "id": [f"{i}:eda:0" for i in src["id"]],
            "source_id": [str(i) for i in src["id"]],
            "text": [t + " 정말" for t in src["text"]],
            "label": src["label"],
            "method": "eda",
        }
    )


@contextlib.contextmanager
def mounted(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs at `path` (size-limited or read-only): a real full disk or read-only file system. Needs root
    (or a mount namespace); skipped with the reason where it cannot be made."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------- 1. output over input
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_eda_refuses_to_write_over_its_input(tmp_path: Path, train_csv: Path, capsys, how: str):
    sources = tmp_path / "t.parquet"
    pl.read_csv(train_csv).head(20).write_parquet(sources)
    out = {"same path": sources, "symlink": tmp_path / "link.parquet", "hard link": tmp_path / "hard.parquet"}[how]
    if how == "symlink":
        out.symlink_to(sources)
    elif how == "hard link":
        os.link(sources, out)
    before = snapshot(sources)
    refused(main(["eda", "--input", str(sources), "--out", str(out)]), capsys, "same file as --input", "--out")
    unchanged(before)
    assert not list(tmp_path.glob("*.drops.json")) and not list(tmp_path.glob(".*parts"))


def test_filter_refuses_out_over_the_training_set(tmp_path: Path, train_csv: Path, capsys):
    train = tmp_path / "tr.parquet"
    pl.read_csv(train_csv).write_parquet(train)
    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    before = snapshot(train, aug)
    code = main(["filter", "--input", str(aug), "--train", str(train), "--out", str(train), "--no-similarity"])
    refused(code, capsys, "--out", "same file as --train")
    unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "tr.parquet", "train.csv"]


def test_mine_and_oof_refuse_an_out_dir_that_holds_their_input(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    train = out / "oof.parquet"  # oof would write its predictions over its own training set
    pl.read_csv(train_csv).write_parquet(train)
    before = snapshot(train)
    refused(main(["oof", "--train", str(train), "--out-dir", str(out)]), capsys, "same file as --train")
    hard = out / "hard.parquet"  # mine would write its selection over the predictions it reads
    train.rename(hard)
    before = snapshot(hard)
    refused(main(["mine", "--input", str(hard), "--out-dir", str(out)]), capsys, "same file as --input")
    unchanged(before)
    assert [p.name for p in out.iterdir()] == ["hard.parquet"]


def test_convert_mbart_refuses_its_own_source_folder_even_with_force(tmp_path: Path, capsys):
    src = tmp_path / "mbart"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "mbart"}')
    before = snapshot(src / "config.json")
    for out in (src, tmp_path):  # the folder itself, and a folder that holds it: --force would delete both
        code = main(["convert-mbart", str(src), str(out), "--force", "--no-verify"])
        refused(code, capsys, "would delete the model being converted")
    unchanged(before)


# -------------------------------------------------------------------------- 2. one label map per job
def test_mine_needs_class_names_for_string_labels_next_to_probability_columns(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40)
    preds = tmp_path / "preds.csv"
    frame = pl.DataFrame({"text": [f"리뷰 {i}" for i in range(40)], "label": [NAMES[i % 4] for i in range(40)]})
    frame.with_columns([pl.Series(f"prob_{c}", probs[:, c]) for c in range(4)]).write_csv(preds)
    out = tmp_path / "out"
    code = main(["mine", "--input", str(preds), "--out-dir", str(out), "--no-label-issues"])
    refused(code, capsys, "--class-names", "prob_0")
    assert not out.exists() or not any(out.iterdir())
    code = main(["mine", "--input", str(preds), "--out-dir", str(out), "--no-label-issues", "--no-report",
                 "--class-names", ",".join(NAMES)])  # fmt: skip
    assert code == 0
    mined = pl.read_parquet(out / "scores.parquet")
    # class ids follow --class-names (the column order), not the sorted names
    assert mined["label"].to_list()[:4] == [0, 1, 2, 3]
    assert json.loads((out / "label_map.json").read_text())["classes"] == NAMES


def test_oof_refuses_test_class_names_against_integer_training_labels(tmp_path: Path, train_csv: Path, capsys):
    test = tmp_path / "test.csv"
    pl.read_csv(SAMPLE / "test.csv").head(40).with_columns(
        pl.col("label").replace_strict(list(range(4)), NAMES)
    ).write_csv(test)
    before = snapshot(train_csv, test)
    out = tmp_path / "oof"
    code = main(["oof", "--train", str(train_csv), "--test", str(test), "--out-dir", str(out), "--folds", "2"])
    err = refused(code, capsys, "label map", "{0: '0', 1: '1', 2: '2', 3: '3'}", "'strong pos'")
    assert str(test) in err
    unchanged(before)
    assert not out.exists() or not any(out.iterdir())


def test_eda_refuses_string_labels_without_a_label_map(tmp_path: Path, capsys):
    sources = tmp_path / "few.csv"  # two of four classes: sorted on their own, "strong pos" would become 0
    texts = ["정말 좋은 영화 였다", "최고의 영화 입니다"]
    pl.DataFrame({"id": [1, 2], "text": texts, "label": ["strong pos", "pos"]}).write_csv(sources)
    out = tmp_path / "aug.parquet"
    refused(main(["eda", "--input", str(sources), "--out", str(out)]), capsys, "label map", "label_map.json")
    assert not out.exists()


def test_augmented_rows_carry_the_label_map_and_filter_compares_it(tmp_path: Path, capsys):
    sources = tmp_path / "hard.parquet"
    texts = ["정말 좋은 영화 였다 진짜", "최고의 영화 입니다 정말"]
    frame = pl.DataFrame({"id": ["a", "b"], "text": texts, "label": ["strong pos", "pos"]})
    write_parquet(frame, sources, classes=NAMES)  # as hardaug mine writes hard.parquet: its map in the file
    aug = tmp_path / "aug.parquet"
    assert main(["eda", "--input", str(sources), "--out", str(aug), "--n", "2"]) == 0
    capsys.readouterr()
    rows = pl.read_parquet(aug)
    assert set(rows["label"].to_list()) == {NAMES.index("strong pos"), NAMES.index("pos")}
    assert json.loads(pl.read_parquet_metadata(aug)["hardaug.classes"]) == NAMES

    train = tmp_path / "train.csv"  # the full set with names: sorted, its ids differ from the map above
    labels = ["strong pos", "pos", "neg", "strong neg"]
    pl.DataFrame({"id": ["a", "b", "c", "d"], "text": ["가", "나", "다", "라"], "label": labels}).write_csv(train)
    out = tmp_path / "kept.parquet"
    before = snapshot(aug, train)
    code = main(["filter", "--input", str(aug), "--train", str(train), "--out", str(out), "--no-similarity"])
    refused(code, capsys, "label maps differ", "{0: 'neg', 1: 'strong neg'", "{0: 'neg', 1: 'pos'")
    unchanged(before)
    assert not out.exists()


def test_a_label_seven_among_zero_to_three_names_its_row(tmp_path: Path, train_csv: Path, capsys):
    bad = tmp_path / "train7.csv"
    frame = pl.read_csv(train_csv)
    seven = pl.when(pl.col("id") == frame["id"][5]).then(7).otherwise(pl.col("label"))
    frame.with_columns(seven.alias("label")).write_csv(bad)
    out = tmp_path / "oof"
    code = main(["oof", "--train", str(bad), "--out-dir", str(out), "--folds", "2"])
    refused(code, capsys, "row 5", "label=7", "[0, 1, 2, 3]")
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------ 3. all outputs or none
def filter_args(aug: Path, train: Path, out: Path, *extra: str) -> list[str]:
    return ["filter", "--input", str(aug), "--train", str(train), "--out", str(out), "--no-similarity", *extra]


def test_filter_writes_kept_rejected_and_summary_together(tmp_path: Path, train_csv: Path, capsys):
    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    out = tmp_path / "f" / "kept.parquet"
    assert main(filter_args(aug, train_csv, out, "--save-label-model", str(tmp_path / "f" / "lm.npz"))) == 0
    kept, rejected = pl.read_parquet(out), pl.read_parquet(out.with_suffix(".rejected.parquet"))
    assert kept.height + rejected.height == 30 and kept["kept"].all() and not rejected["kept"].any()
    assert rejected["reject_reason"].is_not_null().all() and "source_text" in rejected.columns
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["kept"] == kept.height
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "kept.parquet",
        "kept.rejected.parquet",
        "kept.summary.json",
        "lm.npz",
    ]


def test_filter_stops_before_work_when_an_output_folder_is_read_only(tmp_path: Path, train_csv: Path, capsys):
    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    out = tmp_path / "f" / "kept.parquet"
    with mounted(tmp_path / "ro", "ro,size=1m") as ro:
        code = main(filter_args(aug, train_csv, out, "--save-label-model", str(ro / "lm.npz")))
        refused(code, capsys, "--save-label-model", "cannot write in", str(ro))
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_filter_on_a_full_disk_leaves_no_partial_outputs(tmp_path: Path, train_csv: Path, capsys):
    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    with mounted(tmp_path / "small", "size=64k") as small:
        # the label model (~60 kB compressed) does not fit after the other outputs
        code = main(filter_args(aug, train_csv, small / "kept.parquet", "--save-label-model", str(small / "lm.npz")))
        refused(code, capsys, "disk is full", str(small), exit_code=1)
        assert list(small.iterdir()) == []


# ----------------------------------------------------------------------------- 4. untrusted label model
class _Payload:
    """Unpickling this writes a marker file: the proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("name", ["evil.joblib", "evil.npz"])
def test_a_label_model_file_never_runs_code(tmp_path: Path, train_csv: Path, capsys, name: str):
    marker = tmp_path / "pwned"
    evil = tmp_path / name
    if name.endswith(".npz"):  # a pickle inside an .npz: numpy would unpickle an object array if allowed
        with open(evil, "wb") as fh:
            np.savez(fh, meta=np.array([_Payload(marker)], dtype=object))
    else:
        evil.write_bytes(pickle.dumps(_Payload(marker)))
    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    out = tmp_path / "f" / "kept.parquet"
    code = main(filter_args(aug, train_csv, out, "--label-model", str(evil)))
    refused(code, capsys, str(evil))
    assert not marker.exists(), "loading the label model ran code from the file"
    assert not out.parent.exists()
