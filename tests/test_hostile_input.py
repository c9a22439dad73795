"""Input crafted to hurt, or made by a bad day: a label id of 10**12, `inf` labels, model folders that ship
code or pickled weights, a full disk under oof. Each ends in one line that names the file (or folder) and
the row, with no traceback and nothing written, and nothing in a model folder ever runs.

Every test runs the CLI as a user does."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import refused

from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "data" / "sample"


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(200).write_csv(path)
    return path


def relabel(frame: pl.DataFrame, value) -> pl.DataFrame:
    """`frame` with row 5's label replaced by `value` (the column becomes Float64 for a float)."""
    if isinstance(value, float):
        frame = frame.with_columns(pl.col("label").cast(pl.Float64))
    row5 = pl.int_range(pl.len()) == 5
    return frame.with_columns(pl.when(row5).then(pl.lit(value)).otherwise(pl.col("label")).alias("label"))


def augmented_rows(train: Path, path: Path) -> Path:
    """Augmented rows as the augmenters write them (copies of the first 20 training rows), for filter."""
    pl.read_csv(train).head(20).with_columns(
        pl.format("{}:eda:0", pl.col("id")).alias("id"), pl.col("id").cast(pl.String).alias("source_id")
    ).write_parquet(path)
    return path


# ----------------------------------------------------------------------------------------------- labels
BAD_LABELS = {
    "huge": (10**12, ["far outside any class id", "row 5", "at most 10000"]),
    "huge float": (1e30, ["far outside any class id", "row 5"]),
    "inf": (float("inf"), ["infinite labels", "row 5", "label=inf"]),
    "-inf": (float("-inf"), ["infinite labels", "row 5"]),
    "fraction": (1.5, ["non-integer labels", "row 5"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_a_bad_label_is_one_line_in_every_command_and_nothing_is_written(
    tmp_path: Path, train_csv: Path, capsys, case: str
):
    value, patterns = BAD_LABELS[case]
    train = pl.read_csv(train_csv)
    bad = tmp_path / "bad.csv"
    relabel(train, value).write_csv(bad)
    predictions = tmp_path / "oof.parquet"  # as hardaug oof writes them, with uniform probabilities
    relabel(train.with_columns([pl.lit(0.25).alias(f"prob_{c}") for c in range(4)]), value).write_parquet(predictions)
    augmented = augmented_rows(train_csv, tmp_path / "aug.parquet")  # valid: the training set is what fails
    out = tmp_path / "out"
    commands = {
        "oof": ["oof", "--train", str(bad), "--out-dir", str(out / "oof")],
        "eda": ["eda", "--input", str(bad), "--out", str(out / "eda.parquet")],
        "mine": ["mine", "--input", str(predictions), "--out-dir", str(out)],
        "filter": ["filter", "--input", str(augmented), "--train", str(bad), "--out", str(out / "kept.parquet")],
        "compare": ["compare", "--train", str(bad), "--test", str(train_csv), "--out-dir", str(out / "cmp")],
    }
    commands["filter"].append("--no-similarity")
    commands["compare"] += ["--targeted", str(augmented), "--seeds", "0"]
    for name, argv in commands.items():
        line = refused(main(argv), capsys, *patterns)
        assert ("oof.parquet" if name == "mine" else "bad.csv") in line, line
        assert not out.exists() or not any(out.rglob("*")), f"{name} wrote {list(out.rglob('*'))}"


def test_a_one_class_training_set_names_the_file(tmp_path: Path, train_csv: Path, capsys):
    one = tmp_path / "one.csv"
    out = tmp_path / "out"
    for label, shown in ((0, "'0'"), ("pos", "'pos'")):
        pl.read_csv(train_csv).with_columns(pl.lit(label).alias("label")).write_csv(one)
        for argv in (
            ["oof", "--train", str(one), "--out-dir", str(out)],
            ["compare", "--train", str(one), "--test", str(one), "--targeted", str(one), "--out-dir", str(out)],
        ):
            refused(main(argv), capsys, "one.csv", f"has the label {shown}", "at least 2 classes")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- options
def test_eda_variants_have_an_upper_bound(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "eda.parquet"
    refused(main(["eda", "--input", str(train_csv), "--out", str(out), "--n", "1000000000"]), capsys, "1..100")
    assert not out.exists()


def test_filter_names_two_outputs_on_one_file(tmp_path: Path, train_csv: Path, capsys):
    out = tmp_path / "f" / "kept.parquet"
    argv = ["filter", "--input", str(train_csv), "--train", str(train_csv), "--out", str(out), "--summary", str(out)]
    refused(main(argv), capsys, "--summary", "--out", "are the same file", "one output would replace the other")
    assert not out.parent.exists() or not any(out.parent.iterdir())


# -------------------------------------------------------------------------------------------- full disk
def test_oof_on_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path: Path, train_csv: Path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        argv = ["oof", "--train", str(train_csv), "--folds", "3", "--out-dir", str(small / "oof")]
        # the n-gram counts (numpy arrays in the job's scratch folder) are what does not fit
        refused(main(argv), capsys, "the disk is full", str(small), "run the same command", exit_code=1)
        assert not (small / "oof" / "oof.parquet").exists()
        assert not list((small / "oof").rglob("*.npy")), "a half-written array was left to fill the disk"
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        assert main(argv) == 0
        assert pl.read_parquet(small / "oof" / "oof.parquet").height == 200
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# ---------------------------------------------------------------------------------------------- models
EVIL_PY = """from pathlib import Path
Path({marker!r}).write_text("code from the model folder ran")
"""


class _Payload:
    """Unpickling this writes a marker file: the proof that loading ran code from the weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    from engine.random_models.bert import build_random_bert

    return build_random_bert(tmp_path_factory.mktemp("bert") / "clf", "tiny", num_labels=4, vocab_size=300)


@pytest.fixture(scope="module")
def sbert(tmp_path_factory) -> Path:
    from engine.random_models.sbert import build_random_sbert

    return build_random_sbert(tmp_path_factory.mktemp("sbert") / "sbert", "tiny", vocab_size=300)


def with_remote_code(model: Path, folder: Path, marker: Path, config: str = "config.json") -> Path:
    """A copy of `model` whose `config` asks transformers to import evil.py, which writes `marker`."""
    shutil.copytree(model, folder)
    data = json.loads((folder / config).read_text())
    data["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"}
    (folder / config).write_text(json.dumps(data))
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
    return folder


def with_pickled_weights(model: Path, folder: Path, marker: Path) -> Path:
    """A copy of `model` whose only weights are a torch pickle that runs code when unpickled unsafely."""
    import torch

    shutil.copytree(model, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    return folder


def test_echo_y_into_a_label_model_with_custom_code_runs_none(tmp_path: Path, train_csv: Path, classifier: Path):
    marker = tmp_path / "marker.txt"
    remote = with_remote_code(classifier, tmp_path / "remote", marker)
    out = tmp_path / "f" / "kept.parquet"
    aug = augmented_rows(train_csv, tmp_path / "aug.parquet")
    argv = ["filter", "--input", str(aug), "--train", str(train_csv), "--out", str(out), "--no-similarity"]
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *argv, "--label-model", str(remote)],
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("hardaug ")]
    assert len(errors) == 1 and "needs code of its own" in errors[0] and "evil.py" in errors[0], done.stderr
    assert not marker.exists(), "code from the model folder ran"
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("engine", ["oof", "filter --label-model", "filter --embed-model", "paraphrase", "convert"])
def test_no_engine_loads_a_model_folder_that_needs_code(
    tmp_path: Path, train_csv: Path, classifier: Path, sbert: Path, capsys, monkeypatch, engine: str
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # transformers' prompt would read "y"
    marker = tmp_path / "marker.txt"
    out = tmp_path / "out"
    if engine == "filter --embed-model":
        remote = with_remote_code(sbert, tmp_path / "remote", marker)
        modules = json.loads((remote / "modules.json").read_text())
        modules[-1]["type"] = "evil.EvilPooling"  # a sentence-transformers module from the folder's own code
        (remote / "modules.json").write_text(json.dumps(modules))
    else:
        remote = with_remote_code(classifier, tmp_path / "remote", marker)
    aug = augmented_rows(train_csv, tmp_path / "aug.parquet")
    filter_args = ["filter", "--input", str(aug), "--train", str(train_csv), "--out", str(out / "k.parquet")]
    argv = {
        "oof": ["oof", "--backend", "transformers", "--model", str(remote), "--train", str(train_csv)],
        "filter --label-model": [*filter_args, "--no-similarity", "--label-model", str(remote)],
        "filter --embed-model": [*filter_args, "--embed-model", str(remote)],
        "paraphrase": ["paraphrase", "--input", str(train_csv), "--model", str(remote), "--backend", "transformers"],
        "convert": ["convert-mbart", str(remote), str(out / "ct2")],
    }[engine]
    if engine in ("oof", "paraphrase"):
        argv += ["--out-dir", str(out / "o")] if engine == "oof" else ["--out", str(out / "o.parquet")]
    line = refused(main(argv), capsys, "needs code of its own", "never runs code")
    assert "evil.py" in line or "evil.EvilPooling" in line
    assert not marker.exists(), "code from the model folder ran"
    assert not out.exists()


@pytest.mark.parametrize("engine", ["oof", "filter --label-model"])
def test_pickled_weights_that_hold_code_are_one_line(
    tmp_path: Path, train_csv: Path, classifier: Path, capsys, engine: str
):
    marker = tmp_path / "marker.txt"
    pickled = with_pickled_weights(classifier, tmp_path / "pickled", marker)
    out = tmp_path / "out"
    argv = {
        "oof": ["oof", "--backend", "transformers", "--model", str(pickled), "--train", str(train_csv), "--folds", "2"],
        "filter --label-model": ["filter", "--input", str(augmented_rows(train_csv, tmp_path / "aug.parquet"))],
    }[engine]
    if engine == "oof":
        argv += ["--max-length", "16", "--out-dir", str(out)]
    else:
        argv += [
            "--train",
            str(train_csv),
            "--no-similarity",
            "--label-model",
            str(pickled),
            "--out",
            str(out / "k.parquet"),
        ]
    refused(main(argv), capsys, str(pickled), "pickle that torch's safe loader refuses", ".safetensors")
    assert not marker.exists(), "unpickling ran code"
    assert not (out / "oof.parquet").exists() and not (out / "k.parquet").exists()


def test_every_model_load_passes_trust_remote_code_false():
    """The folder check above is the first guard; this is the second: no loader may prompt for, or
    default to, running a model's code. Builders of test models (engine/random_models) load only what
    they wrote; GenerationConfig reads JSON only."""
    loaders = {"SentenceTransformer", "LLM", "TransformersConverter"}
    missing = []
    for path in sorted(p for folder in ("engine", "benchmarks", "tools") for p in (ROOT / folder).rglob("*.py")):
        if "random_models" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if not (name == "from_pretrained" and owner != "GenerationConfig") and name not in loaders:
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            value = keywords.get("trust_remote_code")
            spread = any(k.arg is None for k in node.keywords)  # LLM(**kwargs): the dict must say it
            if isinstance(value, ast.Constant) and value.value is False:
                continue
            if spread and '"trust_remote_code": False' in source:
                continue
            missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not missing, f"loads without trust_remote_code=False: {missing}"
