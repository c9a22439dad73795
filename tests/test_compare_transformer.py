"""`hardaug compare --backend transformers` on a tiny random BERT: the same tables as TF-IDF, all-ones weights
equal to no weights bit for bit, a cell killed in its second epoch resumed to the same result, cells split
over two processes with --only-cells, and bad model or device refused before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_one_thread")
pytest.importorskip("transformers")

from engine.cli import main  # noqa: E402
from engine.cli.common import SAMPLE_DIR  # noqa: E402
from engine.config import CompareConfig, TransformerConfig  # noqa: E402
from engine.experiment import run_compare  # noqa: E402

SAMPLE = Path(str(SAMPLE_DIR))
ROOT = Path(__file__).resolve().parents[1]
# small and quick, with a learning rate at which the tiny model leaves the majority class (real differences)
RECIPE = ["--epochs", "2", "--lr", "1e-3", "--warmup-steps", "2", "--train-batch-size", "8", "--max-length", "32"]


@pytest.fixture(scope="session")
def models(tiny_berts) -> dict[str, Path]:
    return tiny_berts


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """~200 training rows, 60 test rows, 60 targeted augmentations (2 arms: baseline and targeted)."""
    root = tmp_path_factory.mktemp("data")
    nonempty = pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != "")
    train = pl.read_csv(SAMPLE / "train.csv").filter(nonempty).head(200)
    test = pl.read_csv(SAMPLE / "test.csv").filter(nonempty).head(60)
    paths = {"train": root / "train.csv", "test": root / "test.csv", "targeted": root / "targeted.parquet"}
    train.write_csv(paths["train"])
    test.write_csv(paths["test"])
    augmented = train.head(60).select("id", pl.col("text") + " ㅋㅋ", "label").with_columns(method=pl.lit("eda"))
    augmented.write_parquet(paths["targeted"])
    return paths


def _argv(files: dict[str, Path], model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "compare", "--train", str(files["train"]), "--test", str(files["test"]), "--targeted",
        str(files["targeted"]), "--seeds", "0,1", "--bootstrap", "100", "--out-dir", str(out), "--backend",
        "transformers", "--model", str(model), *RECIPE, *extra,
    ]  # fmt: skip


def _shape(value):
    """The structure of a results file: keys, list lengths and value kinds, without the numbers."""
    if isinstance(value, dict):
        return {key: _shape(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


@pytest.mark.slow
def test_transformers_tables_have_the_tfidf_tables_structure(files, models, tmp_path: Path, capsys):
    assert main(_argv(files, models["base"], tmp_path / "bert")) == 0
    tfidf = [a for a in _argv(files, models["base"], tmp_path / "tfidf") if a not in ("transformers",)]
    tfidf = [*tfidf[: tfidf.index("--backend")], "--backend", "tfidf"]
    assert main(tfidf) == 0
    capsys.readouterr()
    bert = json.loads((tmp_path / "bert" / "results.json").read_text())
    plain = json.loads((tmp_path / "tfidf" / "results.json").read_text())
    assert bert["classifier"]["backend"] == "transformers" and bert["classifier"]["epochs"] == 2
    assert {k: v for k, v in _shape(bert).items() if k != "classifier"} == {
        k: v for k, v in _shape(plain).items() if k != "classifier"
    }
    headings = [line for line in (tmp_path / "bert" / "results.md").read_text().splitlines() if line.startswith("#")]
    assert headings == [line for line in (tmp_path / "tfidf" / "results.md").read_text().splitlines()
                        if line.startswith("#")]  # fmt: skip
    manifest = json.loads((tmp_path / "bert" / ".job" / "manifest.json").read_text())
    metas = [part["meta"] for part in manifest["parts"]]
    assert [(m["arm"], m["seed"]) for m in metas] == [("baseline", 0), ("targeted", 0), ("baseline", 1),
                                                      ("targeted", 1)]  # fmt: skip
    assert all(len(m["history"]) == 2 for m in metas)  # a cell per (arm, seed), each trained for every epoch
    # one more seed later trains only the new seed's cells
    assert main([*_argv(files, models["base"], tmp_path / "bert"), "--seeds", "0,1,2"]) == 0
    manifest = json.loads((tmp_path / "bert" / ".job" / "manifest.json").read_text())
    assert [p["meta"]["seed"] for p in manifest["parts"]] == [0, 0, 1, 1, 2, 2]


def test_all_ones_weights_equal_no_weights_bit_for_bit(files, models):
    from engine.oof.transformer import TransformerBackend, predict_proba

    config = TransformerConfig(model=str(models["base"]), epochs=2, lr=1e-3, warmup_steps=2, train_batch_size=8,
                               max_length=32)  # fmt: skip
    train = pl.read_csv(files["train"])
    backend = TransformerBackend(config, k=4, class_names=list("0123"))
    encoded = backend.encode(train["text"].to_list())
    rows, labels = np.arange(len(encoded)), train["label"].to_numpy()
    test = backend.encode(pl.read_csv(files["test"])["text"].to_list())

    def fit(weights):
        model, history = backend.fine_tune(seed=3, encoded=encoded, train_rows=rows, train_labels=labels,
                                           weights=weights)  # fmt: skip
        probs = predict_proba(model, test, np.arange(len(test)), batch_size=64, pad_id=backend.pad_id,
                              device=backend.device, precision="fp32")  # fmt: skip
        return probs, [h["train_loss"] for h in history], model.state_dict()

    plain, ones = fit(None), fit(np.ones(len(rows)))
    assert plain[0].tobytes() == ones[0].tobytes() and plain[1] == ones[1]
    assert all(torch.equal(plain[2][name], ones[2][name]) for name in plain[2])
    heavier = fit(np.where(labels == 0, 3.0, 1.0))  # weights do change the model
    assert heavier[0].tobytes() != plain[0].tobytes()


def test_reweight_arm_trains_with_its_weights(files, models, tmp_path: Path):
    """The library path with a weighted arm: `reweight` (1 + hardness) and its shuffled control."""
    train = pl.read_csv(files["train"]).with_columns(pl.col("id").cast(pl.String))
    test = pl.read_csv(files["test"])
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.05, 0.95, train.height)
    flagged = train.with_columns(
        p_true=pl.Series(p_true), hardness=pl.Series(1 - p_true), oof_pred=pl.col("label"),
        label_issue=pl.Series(rng.uniform(size=train.height) < 0.1), oof_confidence=pl.lit(0.8),
    )  # fmt: skip
    config = CompareConfig(seeds=(0,), bootstrap=100, backend="transformers", transformer=TransformerConfig(
        model=str(models["base"]), epochs=1, lr=1e-3, warmup_steps=2, train_batch_size=16, max_length=32))  # fmt: skip
    results, _ = run_compare(
        train, test, out_dir=tmp_path / "out", k=4, class_names=list("0123"), random_pool=None, all_pool=None,
        config=config, flagged=flagged, cleaning=("reweight",),
    )  # fmt: skip
    assert set(results["arms"]) == {"baseline", "reweight", "reweight-shuffled"}
    manifest = json.loads((tmp_path / "out" / ".job" / "manifest.json").read_text())
    loss = {part["meta"]["arm"]: part["meta"]["history"][0]["train_loss"] for part in manifest["parts"]}
    assert len(set(loss.values())) == 3  # the weights are in the loss: three arms, three training runs


def _cli(argv: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def _cells(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / ".job" / "parts").glob("*.parquet"))}


@pytest.mark.slow
def test_kill_in_a_cells_second_epoch_then_resume_equals_an_uninterrupted_run(files, models, tmp_path: Path):
    out, reference = tmp_path / "killed", tmp_path / "reference"
    argv = [*_argv(files, models["base"], out), "--train-batch-size", "4"]  # more steps: room to kill in epoch 2
    proc = _cli(argv)
    scratch = out / ".job" / "scratch"
    deadline = time.monotonic() + 300
    while not list(scratch.glob("cell_*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # a cell's state after its first epoch: the kill lands in its second
    assert proc.poll() is None, "the run ended before a cell's first epoch was saved"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    assert list(scratch.glob("cell_*.pt")), "nothing to resume from"
    resumed = _cli(argv)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert (
        _cli([*argv[: argv.index("--out-dir") + 1], str(reference), *argv[argv.index("--out-dir") + 2 :]]).wait(
            timeout=600
        )
        == 0
    )
    assert _cells(out) == _cells(reference)
    assert (out / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    assert not list(scratch.glob("cell_*.pt"))  # states are gone once their cells are saved


@pytest.mark.slow
def test_only_cells_in_two_processes_then_the_assembling_run(files, models, tmp_path: Path):
    shared, single = tmp_path / "shared", tmp_path / "single"
    procs = [_cli([*_argv(files, models["base"], shared), "--only-cells", f"{i}/2"]) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "saved cells 0 (baseline, seed 0" in outputs[0][0] and "saved cells 1 (targeted, seed 0" in outputs[1][0]
    assert not (shared / "results.json").exists() and len(_cells(shared)) == 4
    before = {p.name: p.stat().st_mtime_ns for p in (shared / ".job" / "parts").glob("*.parquet")}
    assert main(_argv(files, models["base"], shared)) == 0  # assembles: every cell is saved, none is trained
    assert {p.name: p.stat().st_mtime_ns for p in (shared / ".job" / "parts").glob("*.parquet")} == before
    assert main(_argv(files, models["base"], single)) == 0
    assert (shared / "results.json").read_bytes() == (single / "results.json").read_bytes()


@pytest.mark.parametrize(
    "change, message",
    [
        (["--model", "no/such-model-here"], "--model no/such-model-here"),
        (["--model", "TWO"], "classifier with 2 labels"),
        (["--device", "cuda"], "cuda"),
    ],
)
def test_bad_model_or_device_refused_before_anything_is_written(files, models, tmp_path, capsys, change, message):
    if change[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    change = [str(models["two_labels"]) if c == "TWO" else c for c in change]
    out = tmp_path / "out"
    assert main([*_argv(files, models["base"], out), *change]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
