"""Back-translation on CTranslate2 with a tiny random-weight mBART-50 built and converted once per session.

Random weights translate into gibberish, so these tests check contracts (counts, order, language codes,
provenance, resumability, refusals), never wording. One CPU thread everywhere: the machine is shared.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import polars as pl
import pytest

from engine.augment.backtranslate import (
    LANGUAGE_CODES,
    BacktranslateConfig,
    BacktranslateJob,
    BackTranslator,
    _Tokenizer,
)
from engine.augment.common import AUGMENTED_SCHEMA, augment_file
from engine.augment.convert_mbart import convert_mbart
from engine.cli import main
from engine.errors import InputError
from engine.progress import Progress
from engine.stage import InProcess

pytest.importorskip("ctranslate2")
pytest.importorskip("transformers")

SAMPLE_TEST = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample" / "test.csv"


def _config(model: Path, **options) -> BacktranslateConfig:
    defaults = {"threads": 1, "max_output_tokens": 12, "beam_size": 2, "max_batch_tokens": 256}
    return BacktranslateConfig(model, **{**defaults, **options})


@pytest.fixture(scope="session")
def tiny_mbart(tmp_path_factory) -> dict[str, Path]:
    """A random mBART-50 (d_model 64, 2+2 layers, ~1,000-token tokenizer) and its int8 CTranslate2 folder."""
    from engine.random_models.mbart import build_random_mbart

    root = tmp_path_factory.mktemp("mbart")
    hf = build_random_mbart(root / "hf", "tiny")
    ct2 = convert_mbart(hf, root / "ct2", quantization="int8")
    return {"hf": hf, "ct2": ct2}


@pytest.fixture(scope="session")
def translator(tiny_mbart):
    with BackTranslator(_config(tiny_mbart["ct2"], pivots=("en_XX", "ja_XX"))) as bt:
        yield bt


@pytest.fixture(scope="session")
def reviews() -> list[str]:
    """Real Korean reviews, every length from 1 character up."""
    texts = pl.read_csv(SAMPLE_TEST, infer_schema_length=None)["text"].drop_nulls()
    return texts.head(400).to_list()


@pytest.fixture
def hard_parquet(tmp_path: Path, reviews) -> Path:
    """30 sources like hard.parquet (ids, labels, hardness), 5 of them too short to back-translate."""
    texts = [t for t in reviews if len(t) >= 10][:25] + [t for t in reviews if len(t.strip()) < 10][:5]
    path = tmp_path / "hard.parquet"
    pl.DataFrame(
        {
            "id": [f"s{i:02d}" for i in range(len(texts))],
            "text": texts,
            "label": [i % 4 for i in range(len(texts))],
            "hardness": [1 - i / 100 for i in range(len(texts))],
        }
    ).write_parquet(path)
    return path


def _nothing_written(folder: Path) -> bool:
    return not any(folder.glob("*augmented*")) and not any(folder.glob(".*parts"))


# ------------------------------------------------------------------------------------------- engine
def test_one_back_translation_per_input_in_input_order(tiny_mbart, reviews):
    texts = reviews[:40]  # lengths vary, so CTranslate2 reorders the batches internally
    with BackTranslator(_config(tiny_mbart["ct2"])) as bt:
        together = bt.backtranslate(texts)
        one_by_one = [bt.backtranslate([t])[0] for t in texts]
    assert len(together) == len(texts)
    assert all(len(r) == 1 and r[0].variant == "en_XX.0" and not r[0].sampled for r in together)
    assert together == one_by_one  # beam search does not depend on the batch: position i is input i
    assert all(r[0].output_tokens <= 2 * 12 for r in together)


def test_the_pivot_language_is_the_forced_target(translator, reviews):
    texts = reviews[:12]
    targets = [LANGUAGE_CODES[i % 7] for i in range(len(texts))]  # a different target per text
    hypotheses = translator.translate(texts, source_lang="ko_KR", target_lang=targets)
    assert [h[0].tokens[0] for h in hypotheses] == targets
    for pivot in ("en_XX", "ja_XX"):
        forward = translator.translate(texts, source_lang="ko_KR", target_lang=pivot)
        assert {h[0].tokens[0] for h in forward} == {pivot}
        back = translator.translate([h[0].text for h in forward], source_lang=pivot, target_lang="ko_KR")
        assert {h[0].tokens[0] for h in back} == {"ko_KR"}
    # the decoded text never contains the language code
    assert not any(code in h[0].text for h in hypotheses for code in LANGUAGE_CODES)


def test_sampled_hypotheses_are_independent(translator, reviews):
    samples = translator.translate(reviews[:6], source_lang="ko_KR", target_lang="en_XX", sample=True, num_hypotheses=4)
    assert [len(s) for s in samples] == [4] * 6
    assert all(len({tuple(h.tokens) for h in s}) > 1 for s in samples)


def test_pivots_and_variants_multiply_outputs(tiny_mbart, reviews):
    with BackTranslator(_config(tiny_mbart["ct2"], pivots=("en_XX", "ja_XX"), variants=3)) as bt:
        results = bt.backtranslate(reviews[:5])
    tags = ["en_XX.0", "en_XX.1", "en_XX.2", "ja_XX.0", "ja_XX.1", "ja_XX.2"]
    assert [[bt.variant for bt in r] for r in results] == [tags] * 5
    assert all([bt.sampled for bt in r] == [False, True, True] * 2 for r in results)
    assert all(bt.pivot == bt.variant[:5] for r in results for bt in r)


def _composes_nothing(text: str) -> bool:
    return unicodedata.normalize("NFKC", text) == "".join(unicodedata.normalize("NFKC", c) for c in text)


def test_tokenizer_matches_transformers_and_sentencepiece(tiny_mbart, reviews, tmp_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_mbart["hf"], src_lang="ko_KR")
    json_tok = _Tokenizer(tiny_mbart["ct2"])
    sp_only = tmp_path / "sp-only"
    sp_only.mkdir()
    for name in ("model.bin", "config.json", "shared_vocabulary.json", "sentencepiece.bpe.model"):
        shutil.copy(tiny_mbart["ct2"] / name, sp_only / name)
    sp_tok = _Tokenizer(sp_only)
    texts = reviews[:200]
    expected = [hf.convert_ids_to_tokens(ids) for ids in hf(texts, truncation=True, max_length=64)["input_ids"]]
    assert [["ko_KR", *p, "</s>"] for p in json_tok.encode(texts, 62)] == expected
    # sentencepiece's NFKC composes across characters (the emoticon "ㅡㅅㅡ" becomes "ᅳ스"); the tokenizers
    # port of its normalizer maps character by character ("ᅳ스", whose "ᄉ" is <unk>), and transformers
    # agrees with it. The two paths agree on every text where composition changes nothing.
    plain = [t for t in texts if _composes_nothing(t)]
    assert len(plain) > 150
    assert sp_tok.encode(plain, 62) == json_tok.encode(plain, 62)
    assert len(sp_tok) == len(json_tok) == len(hf)
    # a folder with only the sentencepiece model translates the same
    with BackTranslator(_config(sp_only)) as bt_sp, BackTranslator(_config(tiny_mbart["ct2"])) as bt_json:
        assert bt_sp.backtranslate(texts[:8]) == bt_json.backtranslate(texts[:8])


# ---------------------------------------------------------------------------------------------- job
def test_job_rows_follow_the_augmented_schema_with_provenance(tiny_mbart, hard_parquet, tmp_path):
    out = tmp_path / "augmented.parquet"
    config = _config(tiny_mbart["ct2"], pivots=("en_XX", "de_DE"), variants=2)
    kept, counts = augment_file(BacktranslateJob(config), hard_parquet, out, InProcess(8))
    assert pl.read_parquet(out).equals(kept)
    assert kept.columns == list(AUGMENTED_SCHEMA)
    assert counts["too_short"] == 5 and counts["generated"] == 25 * 4 + 5
    assert (
        counts["kept"]
        == kept.height
        == counts["generated"] - sum(v for k, v in counts.items() if k not in ("generated", "kept"))
    )
    assert json.loads(out.with_suffix(".drops.json").read_text()) == counts
    sources = pl.read_parquet(hard_parquet)
    assert set(kept["source_id"]) <= set(sources["id"].head(25))  # short sources produce nothing
    assert kept.select(pl.struct("source_id", "variant").is_unique().all()).item()
    assert set(kept["variant"]) <= {"en_XX.0", "en_XX.1", "de_DE.0", "de_DE.1"}
    assert (kept["method"] == "backtranslate").all() and (kept["model"] == str(tiny_mbart["ct2"])).all()
    assert (kept["round"] == 1).all()
    assert (kept["id"] == kept["source_id"] + ":backtranslate:" + kept["variant"]).all()
    joined = kept.join(sources, left_on="source_id", right_on="id", suffix="_src")
    assert (joined["label"] == joined["label_src"]).all() and (joined["hardness"] == joined["hardness_src"]).all()
    # input order, then the order they were made in: pivots as given, variants by number
    order = {s: i for i, s in enumerate(sources["id"])}
    rank = {v: i for i, v in enumerate(["en_XX.0", "en_XX.1", "de_DE.0", "de_DE.1"])}
    keys = [(order[s], rank[v]) for s, v in zip(kept["source_id"], kept["variant"], strict=True)]
    assert keys == sorted(keys)
    for row in kept.iter_rows(named=True):
        params, extra = json.loads(row["params"]), json.loads(row["extra"])
        pivot = row["variant"].split(".")[0]
        assert params["pivot"] == extra["pivot"] == pivot and extra["pivot_text"]
        assert params["compute_type"] == "int8" and params["max_output_tokens"] == 12
        if row["variant"].endswith(".0"):
            assert params["decoding"] == "beam" and params["beam_size"] == 2
        else:
            assert params["decoding"] == "sampling" and params["sampling_topk"] == 20 and "seed" in params


def test_resume_after_a_kill_gives_the_same_file(tiny_mbart, hard_parquet, tmp_path):
    config = _config(tiny_mbart["ct2"], pivots=("en_XX", "de_DE"))
    reference, _ = augment_file(BacktranslateJob(config), hard_parquet, tmp_path / "reference.parquet", InProcess(8))

    out = tmp_path / "augmented.parquet"
    seen: list[Progress] = []

    def killed_after_first_chunk(chunk: Progress) -> None:
        seen.append(chunk)
        if chunk.step:
            raise KeyboardInterrupt  # as if the process died right after saving a chunk

    with pytest.raises(KeyboardInterrupt):
        augment_file(BacktranslateJob(config), hard_parquet, out, InProcess(8), on_progress=killed_after_first_chunk)
    assert not out.exists() and len(list(out.parent.glob(f".{out.name}.job/parts/chunk_*.parquet"))) == 1
    assert seen[-1].done == 8 and seen[-1].total == 30

    resumed: list[Progress] = []
    kept, counts = augment_file(BacktranslateJob(config), hard_parquet, out, InProcess(8), on_progress=resumed.append)
    assert [c.done for c in resumed if c.step] == [16, 24, 30]  # the first chunk was not redone
    assert resumed[0].done == 8 and resumed[0].step == 0  # the start: where the earlier run left it
    assert kept.equals(reference)
    assert kept["id"].is_unique().all()
    long_sources = pl.read_parquet(hard_parquet)["id"].head(25).to_list()
    per_source = kept.group_by("source_id").len()
    assert set(per_source["source_id"]) == set(long_sources) and (per_source["len"] == 2).all()  # no gaps
    assert counts["too_short"] == 5


def test_resumed_sampling_still_gives_one_row_per_source_and_variant(tiny_mbart, hard_parquet, tmp_path):
    config = _config(tiny_mbart["ct2"], variants=3, min_chars=0)
    out = tmp_path / "augmented.parquet"

    def kill(chunk: Progress) -> None:
        if chunk.step:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        augment_file(BacktranslateJob(config), hard_parquet, out, InProcess(12), on_progress=kill)
    kept, counts = augment_file(BacktranslateJob(config), hard_parquet, out, InProcess(12))
    assert counts["generated"] == 30 * 3 and "too_short" not in counts
    dropped = counts["generated"] - counts["kept"]
    assert kept.height == 90 - dropped and kept["id"].is_unique().all()


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, m: tmp / "no-such-model", "does not exist"),
        (lambda tmp, m: m["hf"], "Hugging Face checkpoint"),
        (lambda tmp, m: (tmp / "empty").mkdir() or tmp / "empty", "no model.bin"),
    ],
    ids=["missing folder", "hugging face folder", "empty folder"],
)
def test_bad_model_folders_stop_before_any_output(make, message, tiny_mbart, hard_parquet, tmp_path, capsys):
    model = make(tmp_path, tiny_mbart)
    with pytest.raises(InputError, match=message) as error:
        augment_file(BacktranslateJob(_config(model)), hard_parquet, tmp_path / "augmented.parquet")
    assert "convert" in str(error.value)
    assert _nothing_written(tmp_path)
    code = main(
        ["backtranslate", "--input", str(hard_parquet), "--model", str(model), "--out", str(tmp_path / "a.parquet")]
    )
    assert code == 2 and message in capsys.readouterr().err and not (tmp_path / "a.parquet").exists()


def test_a_model_converted_without_tokenizer_class_is_refused(tiny_mbart, hard_parquet, tmp_path):
    broken = tmp_path / "ct2-old"
    shutil.copytree(tiny_mbart["ct2"], broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "decoder_start_token": None}))
    with pytest.raises(InputError, match="tokenizer_class"):
        augment_file(BacktranslateJob(_config(broken)), hard_parquet, tmp_path / "augmented.parquet")
    assert _nothing_written(tmp_path)


def test_a_tokenizer_of_another_model_is_refused(tiny_mbart, tmp_path):
    other = tmp_path / "ct2-other"
    shutil.copytree(tiny_mbart["ct2"], other)
    vocabulary = json.loads((other / "shared_vocabulary.json").read_text())
    vocabulary[10], vocabulary[11] = vocabulary[11], vocabulary[10]
    (other / "shared_vocabulary.json").write_text(json.dumps(vocabulary))
    with pytest.raises(InputError, match="differs from the model's vocabulary at id 10"):
        BackTranslator(_config(other))


def test_unknown_language_codes_list_the_valid_ones(tiny_mbart):
    with pytest.raises(InputError, match="Did you mean en_XX") as error:
        _config(tiny_mbart["ct2"], pivots=("en",))
    assert "ko_KR" in str(error.value) and "ja_XX" in str(error.value)
    with pytest.raises(InputError, match="source language 'korean'"):
        _config(tiny_mbart["ct2"], source_lang="korean")
    with pytest.raises(InputError, match="pivot language 'xx_YY'"):
        _config(tiny_mbart["ct2"], pivots=("en_XX", "xx_YY"))


def test_cli_reports_unknown_language_before_writing(tiny_mbart, hard_parquet, tmp_path, capsys):
    out = tmp_path / "augmented.parquet"
    args = ["backtranslate", "--input", str(hard_parquet), "--model", str(tiny_mbart["ct2"]), "--out", str(out)]
    assert main([*args, "--pivot", "english"]) == 2
    assert "Valid codes: ar_AR, cs_CZ" in capsys.readouterr().err
    assert _nothing_written(tmp_path)


def test_input_without_the_text_column_stops_before_any_output(tiny_mbart, tmp_path, capsys):
    path = tmp_path / "hard.parquet"
    pl.DataFrame({"id": [1, 2], "review": ["정말 재밌는 영화였다", "별로였어요 진짜"], "label": [3, 0]}).write_parquet(
        path
    )
    with pytest.raises(InputError, match="no column 'text'"):
        augment_file(BacktranslateJob(_config(tiny_mbart["ct2"])), path, tmp_path / "augmented.parquet")
    assert _nothing_written(tmp_path)
    out = tmp_path / "a.parquet"
    assert main(["backtranslate", "--input", str(path), "--model", str(tiny_mbart["ct2"]), "--out", str(out)]) == 2
    assert "--text-col" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "options",
    [
        {"variants": 0},
        {"beam_size": 0},
        {"pivots": ()},
        {"pivots": ("en_XX", "en_XX")},
        {"pivots": ("ko_KR",)},
        {"min_output_tokens": 20, "max_output_tokens": 10},
        {"variants": 2, "sampling_topk": 1},
        {"sampling_temperature": 0},
        {"device": "tpu"},
        {"device_index": (0, 1)},
        {"compute_type": "int4"},
        {"threads": -1},
    ],
)
def test_bad_options_are_refused_with_the_value(options, tiny_mbart):
    with pytest.raises(ValueError):
        BacktranslateConfig(tiny_mbart["ct2"], **options)


def test_config_resolves_engine_defaults(tiny_mbart):
    cpu = BacktranslateConfig(tiny_mbart["ct2"], pivots="en_XX")
    assert cpu.pivots == ("en_XX",) and cpu.compute_type == "int8" and cpu.max_batch_tokens == 2048
    assert 1 <= cpu.threads <= 16
    gpu = BacktranslateConfig(tiny_mbart["ct2"], device="cuda", device_index=(0, 1))
    assert gpu.compute_type == "int8_float16" and gpu.max_batch_tokens == 16384
    assert cpu.variant_tags == ["en_XX.0"]
    from engine.cores import usable_cores

    assert BacktranslateConfig(tiny_mbart["ct2"], threads=10_000).threads == usable_cores()  # capped


# ------------------------------------------------------------------------------------- conversion
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tokenizer_class", None, "tokenizer_class"),
        ("tokenizer_class", "MBartTokenizer", "mBART-25"),
        ("normalize_before", None, "normalize_before"),
        ("decoder_start_token_id", 0, "decoder_start_token_id"),
        ("model_type", "bart", "model_type"),
    ],
)
def test_conversion_refuses_configs_that_convert_silently_wrong(field, value, message, tiny_mbart, tmp_path):
    src = tmp_path / "hf"
    shutil.copytree(tiny_mbart["hf"], src)
    config = json.loads((src / "config.json").read_text())
    if value is None:
        config.pop(field)
    else:
        config[field] = value
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=message):
        convert_mbart(src, tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists() and not list(tmp_path.glob(".ct2*"))


def test_conversion_names_missing_sources(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        convert_mbart(tmp_path / "nowhere" / "model", tmp_path / "ct2")
    with pytest.raises(InputError, match="not a local folder"):  # a hub id, and the hub is offline here
        convert_mbart("no-such-owner/no-such-model", tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()


def test_convert_cli_writes_model_tokenizer_and_record(tiny_mbart, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert main(["convert-mbart", str(tiny_mbart["hf"]), str(out), "--quantization", "float32"]) == 0
    assert {"model.bin", "tokenizer.json", "sentencepiece.bpe.model", "conversion.json"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "conversion.json").read_text())["quantization"] == "float32"
    assert main(["convert-mbart", str(tiny_mbart["hf"]), str(out)]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err


def test_cli_backtranslates_a_file(tiny_mbart, hard_parquet, tmp_path, capsys):
    out = tmp_path / "bt" / "augmented.parquet"
    args = ["backtranslate", "--input", str(hard_parquet), "--model", str(tiny_mbart["ct2"]), "--out", str(out)]
    args += ["--pivot", "en_XX", "--pivot", "ja_XX", "--variants", "2", "--threads", "1", "--max-output-tokens", "10"]
    assert main(args) == 0
    kept = pl.read_parquet(out)
    assert set(kept["variant"]) <= {"en_XX.0", "en_XX.1", "ja_XX.0", "ja_XX.1"} and kept.height > 50
    printed = capsys.readouterr().out
    assert "too_short" in printed and "round trips/s" in printed


# ------------------------------------------------------------------------------------- random models
def test_random_model_sizes(tiny_mbart):
    from transformers import MBartForConditionalGeneration

    from engine.random_models.mbart import SHAPES, count_parameters

    model = MBartForConditionalGeneration.from_pretrained(tiny_mbart["hf"])
    vocab = model.config.vocab_size
    # transformers 5 keeps encoder/decoder embeddings apart when untied; they hold equal values
    assert (model.model.encoder.embed_tokens.weight == model.model.shared.weight).all()
    shared = 2 * vocab * model.config.d_model
    assert sum(p.numel() for p in model.parameters()) - shared == count_parameters(SHAPES["tiny"], vocab)
    # the real facebook/mbart-large-50 (tied output layer): 610,879,488 parameters
    large = SHAPES["large"]
    assert count_parameters(large, 250_054) - 250_054 * large.d_model == 610_879_488
