"""One rule for "local folder or hub id" (engine.models): folders are checked, hub ids come from the local
cache first, and without hub access they fail at once with the fix instead of retrying for a minute.

The hub cache here is a real one in huggingface_hub's layout (refs/main naming a snapshot folder),
written by the test; nothing is downloaded (conftest sets HF_HUB_OFFLINE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.models import WEIGHTS, hub_offline, looks_like_path, resolve_model

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache_model(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """A model in the hub cache layout: models--owner--name/{refs/main, snapshots/<revision>/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_conftest_keeps_the_hub_offline():
    assert hub_offline()


@pytest.mark.parametrize(
    ("spec", "is_path"),
    [
        ("jhgan/ko-sroberta-multitask", False),
        ("bert-base-uncased", False),
        ("./models/x", True),
        ("/abs/model", True),
        ("~/model", True),
        ("models/owner/name", True),
        ("owner/name/", True),
        ("owner/na me", True),
    ],
)
def test_what_counts_as_a_path(spec, is_path):
    assert looks_like_path(spec) is is_path


def test_local_folders_are_checked(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    source = resolve_model(str(model))
    assert source.local and source.path == model and not source.cached and source.load_from == str(model)
    with pytest.raises(InputError, match=r"has no \*\.safetensors"):
        resolve_model(str(model), needs=(("config.json",), WEIGHTS))
    (model / "config.json").rename(model / "other.json")
    with pytest.raises(InputError, match=r"has no config\.json \(found \['other\.json'\]\)"):
        resolve_model(str(model))
    with pytest.raises(InputError, match="is a file"):
        resolve_model(str(model / "other.json"))
    with pytest.raises(InputError, match="no such folder"):
        resolve_model(str(tmp_path / "missing" / "model"), option="--embed-model")


def test_an_uncached_hub_id_offline_fails_with_the_fix(hub_cache):
    with pytest.raises(InputError) as err:
        resolve_model("jhgan/ko-sroberta-multitask", option="--embed-model", skip_hint="--no-similarity")
    message = str(err.value)
    assert "--embed-model jhgan/ko-sroberta-multitask is not a local folder nor in the local hub cache" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "hf download jhgan/ko-sroberta-multitask" in message and "--no-similarity" in message


def test_a_cached_hub_id_resolves_to_its_snapshot(hub_cache):
    snapshot = _cache_model(hub_cache, "owner/tiny", {"config.json": "{}", "model.safetensors": ""})
    source = resolve_model("owner/tiny", needs=(("config.json",), WEIGHTS))
    assert source.path == snapshot and source.cached and source.load_from == str(snapshot)


def test_a_partly_cached_hub_id_names_what_is_missing(hub_cache):
    _cache_model(hub_cache, "owner/partial", {"config.json": json.dumps({"model_type": "bert"})})
    with pytest.raises(InputError, match=r"only partly: no \*\.safetensors"):
        resolve_model("owner/partial", needs=(("config.json",), WEIGHTS))


def test_an_unreachable_hub_fails_at_once(hub_cache, monkeypatch):
    """Online mode, but nothing answers at the hub's address (a closed local port)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(InputError, match=r"the model hub \(http://127\.0\.0\.1:9\) could not be reached") as err:
        resolve_model("owner/nowhere")
    assert "hf download owner/nowhere" in str(err.value)


def test_the_filters_default_embedding_model_fails_fast_offline(hub_cache):
    """The bug this guards: the default similarity model used to retry the hub for about 80 s."""
    from engine.filters.config import DEFAULT_EMBED_MODEL
    from engine.filters.semantic import Embedder

    with pytest.raises(InputError, match="--no-similarity"):
        Embedder(DEFAULT_EMBED_MODEL)


def test_oof_and_paraphrase_use_the_same_rule(hub_cache, tmp_path):
    from engine.augment.paraphrase import check_model
    from engine.oof.transformer import resolve_source

    for check in (resolve_source, check_model):
        with pytest.raises(InputError, match="not a local folder nor in the local hub cache"):
            check("owner/not-cached")
        with pytest.raises(InputError, match="no such folder"):
            check(str(tmp_path / "nowhere"))


def test_filter_with_the_default_model_offline_stops_at_once_with_the_fix(hub_cache, tmp_path, capsys):
    """`hardaug filter` as a user runs it: the default similarity model, no hub, nothing written."""
    import polars as pl

    from engine.cli import main

    train = tmp_path / "train.csv"
    pl.read_csv(Path(__file__).resolve().parents[1] / "engine" / "data" / "sample" / "train.csv", n_rows=60).write_csv(
        train
    )
    augmented = tmp_path / "eda.parquet"
    assert main(["eda", "--input", str(train), "--out", str(augmented)]) == 0
    out = tmp_path / "filtered"
    capsys.readouterr()
    code = main(["filter", "--input", str(augmented), "--train", str(train), "--out", str(out / "kept.parquet")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--embed-model jhgan/ko-sroberta-multitask is not a local folder nor in the local hub cache" in err
    assert "--no-similarity" in err and "hf download" in err
    assert not out.exists()
