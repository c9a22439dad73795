"""Shared fixtures: generated data with known answers, and real predictions on the bundled sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "data" / "sample"

# Model libraries write caches, compiled kernels and sockets under the home folder and /tmp by default;
# keep them in the project, and never reach for a model hub (tests build their models locally).
_CACHE = ROOT / ".cache"
for _var, _sub in (
    ("HF_HOME", "huggingface"),
    ("TORCH_HOME", "torch"),
    ("VLLM_CACHE_ROOT", "vllm"),
    ("TORCHINDUCTOR_CACHE_DIR", "torchinductor"),
    ("MPLCONFIGDIR", "matplotlib"),
):
    os.environ.setdefault(_var, str(_CACHE / _sub))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _syllables(rng: np.random.Generator, n: int, length: int) -> list[str]:
    # Random Hangul "words": TF-IDF character n-grams can learn them, nobody has to invent a vocabulary.
    codes = rng.integers(0xAC00, 0xD7A3, size=(n, length))
    return ["".join(chr(c) for c in row) for row in codes]


def make_noisy_dataset(n: int = 1200, k: int = 4, flip: float = 0.1, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Texts whose class is visible in their words, with a known share of labels flipped.

    Returns the frame (id, text, label = observed, possibly wrong) and a boolean mask of flipped rows.
    """
    rng = np.random.default_rng(seed)
    class_words = [_syllables(rng, 25, 2) for _ in range(k)]
    shared = _syllables(rng, 60, 2)
    true = rng.integers(0, k, size=n)
    texts = []
    for label in true:
        words = [
            class_words[label][rng.integers(25)] if rng.random() < 0.6 else shared[rng.integers(60)]
            for _ in range(rng.integers(6, 12))
        ]
        texts.append(" ".join(words))
    flipped = rng.random(n) < flip
    observed = true.copy()
    observed[flipped] = (true[flipped] + rng.integers(1, k, size=flipped.sum())) % k
    frame = pl.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "text": texts, "label": observed})
    return frame, flipped


@pytest.fixture(scope="session")
def noisy_dataset() -> tuple[pl.DataFrame, np.ndarray]:
    return make_noisy_dataset()


@pytest.fixture(scope="session")
def sample_oof(tmp_path_factory) -> Path:
    """`hardaug oof` on the first 3,000 rows of the bundled sample, 3 folds, with a test set."""
    from engine.cli import main

    root = tmp_path_factory.mktemp("sample_oof")
    train = root / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(3000).write_csv(train)
    test = root / "test.csv"
    pl.read_csv(SAMPLE / "test.csv").head(500).write_csv(test)
    out = root / "oof"
    assert main(["oof", "--train", str(train), "--test", str(test), "--folds", "3", "--out-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_berts(tmp_path_factory) -> dict[str, Path]:
    """A tiny random BERT encoder without a head (like a hub checkpoint), and a 2-label classifier beside it,
    with a WordPiece vocabulary from the sample's reviews: built once for the oof and compare tests."""
    from engine.random_models.bert import build_random_bert, build_tokenizer

    texts = pl.read_csv(SAMPLE / "train.csv", n_rows=3000)["text"].drop_nulls().to_list()
    tokenizer = build_tokenizer(texts, vocab_size=2000, model_max_length=128)
    root = tmp_path_factory.mktemp("bert")
    return {
        "base": build_random_bert(root / "tiny", "tiny", tokenizer=tokenizer),
        "two_labels": build_random_bert(root / "tiny-2", "tiny", tokenizer=tokenizer, num_labels=2),
    }


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


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one thread for a module's tests (the machine is shared; results do not depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_EVERY_TEST = pytest.StashKey[dict[str, list[bool]]]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: before -m/-k/--deselect drop anything, so `make test-fast` still sees the slow tests. Recorded only
    # when whole files were collected (no `file::test` argument, no --lf), where a module's list is its full list.
    if any("::" in arg for arg in config.args) or config.getoption("lf", False):
        return
    slow: dict[str, list[bool]] = {}
    for item in items:
        slow.setdefault(item.nodeid.split("::")[0], []).append(item.get_closest_marker("slow") is not None)
    config.stash[_EVERY_TEST] = slow


@pytest.fixture
def every_test(request) -> dict[str, list[bool]]:
    """Each collected test module: for each of its tests, whether it is marked slow."""
    if _EVERY_TEST not in request.config.stash:
        pytest.skip("only some tests of a module were collected (file::test or --lf)")
    return request.config.stash[_EVERY_TEST]
