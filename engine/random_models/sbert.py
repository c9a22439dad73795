"""Random-weight sentence-transformers models (BERT + mean pooling), built locally for tests and benchmarks.

The encoder and its WordPiece tokenizer come from `engine.random_models.bert` (trained on Korean reviews,
no accent stripping, so Hangul syllables stay whole); this module wraps them the way
jhgan/ko-sroberta-multitask is laid out: a transformer module, then mean pooling over the tokens.

Random weights embed noise, but a deterministic noise: identical texts still get identical embeddings
(cosine 1.0) and the filter's plumbing (batching, order, devices, thresholds) is the real one. Test on that
and on structure, never on meaning.

    python -m engine.random_models.sbert tiny /tmp/tiny-sbert
    python -m engine.random_models.sbert base /tmp/sbert-base-shape   # ko-sroberta's BERT-base shape
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.random_models.bert import SHAPES, BertShape, build_random_bert

log = logging.getLogger(__name__)


def build_random_sbert(
    out_dir: str | Path,
    shape: BertShape | str = "tiny",
    *,
    texts: Sequence[str] | None = None,
    vocab_size: int = 2000,
    max_seq_length: int = 128,
    seed: int = 0,
) -> Path:
    """Save a sentence-transformers folder (modules.json, BERT weights, tokenizer, mean pooling) to `out_dir`.

    `shape` is a name from `engine.random_models.bert.SHAPES` (tiny, small, base) or a `BertShape`;
    `texts` train the WordPiece vocabulary (default: the bundled nsmc4 sample). Returns the folder, which
    `SentenceTransformer(str(folder))` loads offline.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    shape = SHAPES[shape] if isinstance(shape, str) else shape
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="random-bert-") as tmp:
        build_random_bert(tmp, shape, texts=texts, vocab_size=vocab_size, seed=seed)
        encoder = Transformer(tmp, max_seq_length=min(max_seq_length, shape.max_position_embeddings))
        pooling = Pooling(encoder.get_embedding_dimension(), "mean")
        model = SentenceTransformer(modules=[encoder, pooling], device="cpu")
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save(str(out_dir))
    log.info("saved a random sentence-transformers model (%s) to %s", shape, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a random-weight sentence-transformers folder (no downloads).")
    p.add_argument("shape", choices=sorted(SHAPES), help="tiny (tests), small (CPU benchmark), base (BERT-base)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--vocab-size", type=int, default=None, help="WordPiece size (default: 2000 tiny, 8000 others)")
    p.add_argument("--max-seq-length", type=int, default=128, help="tokens per text (default: 128)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    vocab = args.vocab_size or (2000 if args.shape == "tiny" else 8000)
    build_random_sbert(args.out_dir, args.shape, vocab_size=vocab, max_seq_length=args.max_seq_length, seed=args.seed)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
