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
from conftest import refused

from engine.cli import main
from engine.io import write_parquet

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample"
NAMES = ["neg", "strong neg", "pos", "strong pos"]  # sorted: neg, pos, strong neg, strong pos


# ------------------------------------------------------------------------------------------------ helpers
def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


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


@pytest.mark.slow
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
        ".kept.parquet.job",  # the job folder: lock and done marker
        "kept.parquet",
        "kept.rejected.parquet",
        "kept.summary.json",
        "lm.npz",
    ]


def test_the_same_filter_job_again_is_up_to_date_and_a_second_one_at_once_is_refused(
    tmp_path: Path, train_csv: Path, capsys
):
    from engine.jobs import Job

    aug = tmp_path / "a.parquet"
    augmented_rows(train_csv).write_parquet(aug)
    out = tmp_path / "f" / "kept.parquet"
    files = [out, out.with_suffix(".rejected.parquet"), out.with_suffix(".summary.json")]
    assert main(filter_args(aug, train_csv, out)) == 0
    first = capsys.readouterr().out
    written = snapshot(*files)
    stamps = [p.stat().st_mtime_ns for p in files]
    assert main(filter_args(aug, train_csv, out)) == 0
    again = capsys.readouterr().out
    assert "up to date" in again and "up to date" not in first
    unchanged(written)
    assert [p.stat().st_mtime_ns for p in files] == stamps  # nothing recomputed, nothing rewritten
    # another option is another job: filtered again
    assert main(filter_args(aug, train_csv, out, "--dup-threshold", "0.9")) == 0
    assert "up to date" not in capsys.readouterr().out
    # a run that holds the job folder (here: this process) refuses a second filter into the same --out
    with Job(out.with_name(f".{out.name}.job"), "held"):
        refused(main(filter_args(aug, train_csv, out, "--restart")), capsys, f"pid {os.getpid()}", str(out))


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
        assert [p.name for p in small.iterdir()] == [".kept.parquet.job"]  # no output, only the job folder
        assert [p.name for p in (small / ".kept.parquet.job").iterdir()] == ["lock"]  # and no done marker


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


# ----------------------------------------------------------------- 5. engine processes die with the command
@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory) -> Path:
    from engine.random_models.qwen2 import build_tiny_qwen2, sample_texts

    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2", "tiny", texts=sample_texts(3000))


@pytest.mark.slow
def test_kill_9_of_paraphrase_leaves_no_engine_process(tmp_path: Path, tiny_qwen2: Path):
    """A real `hardaug paraphrase` on vLLM in its default multiprocess mode, killed with SIGKILL once its
    engine runs: the EngineCore and Worker processes must go with it."""
    pytest.importorskip("vllm")
    psutil = pytest.importorskip("psutil")
    import signal
    import sys
    import time

    sources = tmp_path / "hard.parquet"
    pl.read_csv(SAMPLE / "train.csv").head(400).write_parquet(sources)
    out = tmp_path / "aug.parquet"
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": str(root), "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    argv = ["paraphrase", "--input", str(sources), "--out", str(out), "--model", str(tiny_qwen2)]
    argv += ["--max-tokens", "32", "--chunk-size", "4", "--max-model-len", "512"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    parts = out.with_name(f".{out.name}.job") / "parts"
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 900  # the engine starts in 15 s on an idle machine, minutes on a busy one
        while not list(parts.glob("chunk_*.parquet")):  # a chunk is done: the engine is up and working
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.5)
        for child in psutil.Process(proc.pid).children(recursive=True):
            seen[child.pid] = child
        engine = [p.name() for p in seen.values() if p.name().startswith("VLLM")]
        assert engine, f"no vLLM engine process among {[p.name() for p in seen.values()]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()

    def running() -> list:
        out = []
        for p in seen.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = running()
    for p in left:  # never leave them to the next test
        p.kill()
    assert not left, f"still running after the command was killed: {[(p.pid, p.name()) for p in left]}"


# ------------------------------------------------------------------- 6. ordinary faults: one clear line
def test_a_nan_label_in_a_float_column_names_the_row(tmp_path: Path, train_csv: Path, capsys):
    train = tmp_path / "nan.parquet"
    frame = pl.read_csv(train_csv).with_columns(pl.col("label").cast(pl.Float64))
    nan = pl.when(pl.int_range(pl.len()) == 7).then(float("nan")).otherwise(pl.col("label"))
    frame.with_columns(nan.alias("label")).write_parquet(train)
    out = tmp_path / "oof"
    refused(main(["oof", "--train", str(train), "--out-dir", str(out)]), capsys, "missing labels at row 7")
    assert not out.exists()


@pytest.mark.parametrize(
    "option", [["--text-col", "label"], ["--label-col", "text"], ["--id-col", "label"], ["--id-col", "text"]]
)
def test_two_column_options_naming_one_column(tmp_path: Path, train_csv: Path, capsys, option: list[str]):
    out = tmp_path / "oof"
    refused(main(["oof", "--train", str(train_csv), "--out-dir", str(out), *option]), capsys, "both name the column")
    assert not out.exists()


def test_read_only_output_folders_stop_before_any_work(tmp_path: Path, train_csv: Path, capsys):
    sources = tmp_path / "s.parquet"
    pl.read_csv(train_csv).head(10).write_parquet(sources)
    with mounted(tmp_path / "ro", "ro,size=1m") as ro:
        refused(main(["oof", "--train", str(train_csv), "--out-dir", str(ro / "oof")]), capsys, "cannot write in")
        refused(main(["eda", "--input", str(sources), "--out", str(ro / "a.parquet")]), capsys, "cannot write in")
        refused(main(["mine", "--input", str(sources), "--out-dir", str(ro)]), capsys, "cannot write in")


def test_a_full_disk_keeps_finished_parts_and_the_same_command_resumes(tmp_path: Path, train_csv: Path, capsys):
    sources = tmp_path / "s.parquet"
    pl.read_csv(train_csv).head(300).write_parquet(sources)
    reference = tmp_path / "ref.parquet"
    args = ["--input", str(sources), "--n", "2", "--chunk-size", "30"]
    assert main(["eda", *args, "--out", str(reference)]) == 0
    with mounted(tmp_path / "small", "size=48k") as small:
        out = small / "aug.parquet"
        refused(main(["eda", *args, "--out", str(out)]), capsys, "disk is full", "run the same command", exit_code=1)
        parts = list(small.glob(".aug.parquet.job/parts/chunk_*.parquet"))
        assert parts and not out.exists()  # finished chunks kept, no output that looks complete
        subprocess.run(["mount", "-o", "remount,size=8m", str(small)], check=True)
        assert main(["eda", *args, "--out", str(out)]) == 0
        assert pl.read_parquet(out).equals(pl.read_parquet(reference))


def test_compare_refuses_bad_pools_and_seeds(tmp_path: Path, train_csv: Path, capsys):
    rows = augmented_rows(train_csv).with_columns(pl.lit(True).alias("kept"))
    null = pl.when(pl.int_range(pl.len()) == 3).then(None)
    pools = {
        "null_text": (rows.with_columns(null.otherwise(pl.col("text")).alias("text")), "'text' is empty at row 3"),
        "null_label": (rows.with_columns(null.otherwise(pl.col("label")).alias("label")), "'label' is empty at row 3"),
        "kept_strings": (rows.with_columns(pl.col("kept").cast(pl.String)), "'kept' holds String"),
    }
    out = tmp_path / "cmp"
    common = ["compare", "--train", str(train_csv), "--test", str(train_csv), "--out-dir", str(out)]
    for name, (frame, message) in pools.items():
        frame.write_parquet(tmp_path / f"{name}.parquet")
        refused(main([*common, "--targeted", str(tmp_path / f"{name}.parquet"), "--seeds", "0"]), capsys, message)
    rows.write_parquet(tmp_path / "ok.parquet")
    for seeds, message in (("-1", "integers >= 0"), ("a,b", "expected seeds like 0,1,2")):
        with pytest.raises(SystemExit) as stop:  # argparse: a usage error, exit code 2, one line
            main([*common, "--targeted", str(tmp_path / "ok.parquet"), f"--seeds={seeds}"])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_paraphrase_on_a_missing_gpu_stops_before_writing(tmp_path: Path, tiny_qwen2: Path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    sources = tmp_path / "s.parquet"
    pl.read_csv(SAMPLE / "train.csv").head(5).write_parquet(sources)
    out = tmp_path / "p" / "aug.parquet"
    argv = ["paraphrase", "--input", str(sources), "--out", str(out), "--model", str(tiny_qwen2)]
    refused(main([*argv, "--backend", "transformers", "--device", "cuda"]), capsys, "--device cuda", "--device cpu")
    assert not out.parent.exists() or not any(out.parent.iterdir())


# ------------------------------------------------------------------------- 7. messages that help
def test_a_tab_separated_file_named_csv(tmp_path: Path, train_csv: Path, capsys):
    tabs = tmp_path / "tabs.csv"
    tabs.write_text(train_csv.read_text(encoding="utf-8").replace(",", "\t"), encoding="utf-8")
    out = tmp_path / "oof"
    refused(main(["oof", "--train", str(tabs), "--out-dir", str(out)]), capsys, "tab-separated", "tabs.tsv")


def test_a_cp949_file_names_its_encoding_and_the_iconv_command(tmp_path: Path, train_csv: Path, capsys):
    korean = tmp_path / "k.csv"
    korean.write_bytes(train_csv.read_text(encoding="utf-8").encode("cp949", errors="replace"))
    out = tmp_path / "oof"
    err = refused(main(["oof", "--train", str(korean), "--out-dir", str(out)]), capsys, "not UTF-8", "cp949")
    assert f"iconv -f cp949 -t UTF-8 {korean}" in err


def test_every_text_empty(tmp_path: Path, train_csv: Path, capsys):
    empty = tmp_path / "e.csv"
    pl.read_csv(train_csv).with_columns(pl.lit("  ").alias("text")).write_csv(empty)
    out = tmp_path / "oof"
    refused(main(["oof", "--train", str(empty), "--out-dir", str(out)]), capsys, "every text in column 'text' is empty")


def test_mine_names_missing_prob_columns(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "mine"
    code = main(["mine", "--input", str(train_csv), "--prob-cols", "x,y", "--out-dir", str(out)])
    refused(code, capsys, "no column 'x'", "--prob-cols")


def test_id_col_suggestions_name_columns_of_the_file(tmp_path: Path, train_csv: Path, capsys):
    renamed = tmp_path / "r.csv"
    pl.read_csv(train_csv).rename({"id": "review_id"}).with_columns(pl.lit(1).alias("id")).write_csv(renamed)
    out = tmp_path / "oof"
    err = refused(main(["oof", "--train", str(renamed), "--out-dir", str(out), "--id-col", "id_review"]), capsys)
    assert "Did you mean 'review_id'" in err and "id_original" not in err
