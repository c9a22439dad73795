"""Random-weight BERT classifiers built locally, for tests and benchmarks on machines without a model hub.

- `build_tokenizer`: a WordPiece vocabulary trained on the given texts (Korean reviews by default), no
  lower-casing and no accent stripping (stripping accents decomposes Hangul syllables into jamo), wrapped
  as a transformers `BertTokenizer` like kykim/bert-kor-base's.
- `build_random_bert`: tokenizer + random weights of any shape, saved like a real checkpoint. With
  `num_labels=None` it saves a bare `BertModel` (a "pretrained encoder" without a head, as on the hub:
  fine-tuning adds a fresh classifier); with `num_labels=K` a `BertForSequenceClassification` with K labels.
  Random weights predict noise: test shapes, counts and contracts, never accuracy.

    python -m engine.random_models.bert tiny /tmp/tiny-bert
    python -m engine.random_models.bert base /tmp/bert-base-shape    # kykim/bert-kor-base's shape, 118M
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class BertShape:
    """The sizes that set a BERT's cost. `vocab_size=None` = the tokenizer's size."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    vocab_size: int | None = None


SHAPES = {
    # a fold of a few hundred rows trains in about a second: for tests
    "tiny": BertShape(32, 2, 2, 64, max_position_embeddings=128),
    # ~10M parameters: the CPU benchmark's model
    "small": BertShape(256, 4, 4, 1024),
    # kykim/bert-kor-base: BERT-base with a 42,000-token WordPiece vocabulary (~118M parameters)
    "base": BertShape(768, 12, 12, 3072, vocab_size=42000),
}


def sample_texts(limit: int | None = None) -> list[str]:
    """Real Korean reviews bundled with the package (nsmc4 sample, CC0), to train tokenizers on."""
    import polars as pl

    path = resources.files("engine") / "data" / "sample" / "train.csv"
    texts = pl.read_csv(str(path), infer_schema_length=None)["text"].drop_nulls().to_list()
    return texts[:limit] if limit else texts


def build_tokenizer(texts: Iterable[str] | None = None, *, vocab_size: int = 2000, model_max_length: int = 512):
    """A WordPiece `BertTokenizer` trained on `texts` (default: 5,000 bundled reviews).

    The trainer keeps every character it sees, so the vocabulary can end up a little larger than asked.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    texts = list(texts) if texts is not None else sample_texts(5000)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The trainer picks the same tokens every time but numbers tied ones in hash-map order, which differs
    # from run to run; WordPiece only needs the set, so number it in a fixed order: the same texts then give
    # the same token ids, and a random model built on them trains the same way in every test run.
    tokens = [*SPECIAL_TOKENS, *sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS))]
    # BertTokenizer builds its own normalizer, pre-tokenizer and [CLS] ... [SEP] template from these options.
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        do_lower_case=False,
        strip_accents=False,
        model_max_length=model_max_length,
    )


def bert_config(shape: BertShape, tokenizer, num_labels: int | None = None):
    from transformers import BertConfig

    extra = {}
    if num_labels is not None:
        extra = {
            "num_labels": num_labels,
            "architectures": ["BertForSequenceClassification"],
        }
    return BertConfig(
        vocab_size=max(shape.vocab_size or 0, len(tokenizer)),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_random_bert(
    out_dir: str | Path,
    shape: BertShape | str = "tiny",
    *,
    texts: Sequence[str] | None = None,
    tokenizer=None,
    vocab_size: int = 2000,
    num_labels: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a random-weight BERT + WordPiece tokenizer (float32) to `out_dir`; returns the folder.

    `num_labels=None` saves a `BertModel` (no classification head); an int saves a
    `BertForSequenceClassification` with that many labels. Pass `tokenizer` to reuse one across folders.
    """
    import torch
    from transformers import BertForSequenceClassification, BertModel

    shape = SHAPES[shape] if isinstance(shape, str) else shape
    out_dir = Path(out_dir)
    if tokenizer is None:
        tokenizer = build_tokenizer(texts, vocab_size=vocab_size, model_max_length=shape.max_position_embeddings)
    config = bert_config(shape, tokenizer, num_labels)
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=True) if num_labels is None else BertForSequenceClassification(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("saved a random %s (%.1fM parameters) to %s", type(model).__name__, n_params / 1e6, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a random-weight BERT folder (no downloads).")
    p.add_argument("shape", choices=sorted(SHAPES), help="tiny (tests), small (CPU benchmark), base (BERT-base)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--texts", type=Path, default=None, help="CSV with a text column to train the WordPiece on")
    p.add_argument("--rows", type=int, default=20000, help="rows of --texts to train the tokenizer on")
    p.add_argument("--vocab-size", type=int, default=None, help="WordPiece size (default: 2000 tiny, 8000 others)")
    p.add_argument("--num-labels", type=int, default=None, help="save a classifier with this many labels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    texts = None
    if args.texts is not None:
        import polars as pl

        texts = pl.read_csv(args.texts, n_rows=args.rows, infer_schema_length=None)["text"].drop_nulls().to_list()
    vocab = args.vocab_size or (2000 if args.shape == "tiny" else 8000)
    build_random_bert(
        args.out_dir, args.shape, texts=texts, vocab_size=vocab, num_labels=args.num_labels, seed=args.seed
    )
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
