"""Random-weight mBART-50 models built locally, for tests and benchmarks on machines without a model hub.

- `build_tokenizer`: a sentencepiece unigram model trained on Korean reviews and English lines, wrapped as
  transformers' `MBart50Tokenizer` (fairseq id layout, the 52 mBART-50 language codes, `<mask>`). With
  `vocab_size=250_054` the sentencepiece model is padded to 250,000 pieces, so the tokenizer, the
  embeddings and the output layer have exactly the size of facebook/mbart-large-50-many-to-many-mmt's.
- `build_random_mbart`: tokenizer + a random `MBartForConditionalGeneration` of any shape, saved like a
  real checkpoint (config.json with `tokenizer_class`, weights, tokenizer.json, sentencepiece.bpe.model).
  Random weights translate into gibberish: test counts, order, shapes and provenance, never wording.

    python -m engine.random_models.mbart tiny /tmp/tiny-mbart
    python -m engine.random_models.mbart large /tmp/mbart-large-50-shape   # the real shape

`tools/make_random_model.py mbart` builds and converts to CTranslate2 in one step.
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

# facebook/mbart-large-50*: 250,000 sentencepiece pieces + <pad> (fairseq offset) + 52 language codes + <mask>
MBART50_VOCAB_SIZE = 250_054
_SP_PIECES_PER_EXTRA = 54  # tokenizer size - sentencepiece size

# Hand-written so the tokenizer has English pieces without downloading a corpus.
ENGLISH_LINES = (
    "This movie was great and the actors were wonderful.",
    "The story is boring and far too long.",
    "I loved the music but the ending was weak.",
    "What a waste of time, I want my money back.",
    "Not bad, but I expected more from this director.",
    "The best film I have seen this year.",
    "The plot made no sense at all.",
    "A touching story about family and friendship.",
    "The special effects were amazing, the dialogue was not.",
    "I fell asleep halfway through.",
    "Funny, warm and surprisingly clever.",
    "The acting was terrible and the script was worse.",
    "It is a masterpiece that everyone should watch.",
    "Too predictable, but the cast saves it.",
    "I would not recommend it to anyone.",
    "The first half is slow, the second half is brilliant.",
    "My children enjoyed it very much.",
    "An honest and moving film about growing old.",
    "The translation of the subtitles was poor.",
    "I watched it twice and cried both times.",
    "Nothing happens for two hours.",
    "The villain was the most interesting character.",
    "Beautiful pictures, empty story.",
    "The sequel is better than the original.",
    "I do not understand why people like this movie.",
    "It was okay, nothing special.",
    "Great cast, bad editing, average movie.",
    "The ending surprised me completely.",
    "A classic that still works today.",
    "The jokes were not funny at all.",
)


@dataclass(frozen=True)
class MBartShape:
    """The sizes that set an mBART's cost. `vocab_size=None` = the trained tokenizer's own size (small)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int
    vocab_size: int | None = None
    max_position_embeddings: int = 1024


SHAPES = {
    # seconds to build and convert: for tests
    "tiny": MBartShape(64, 2, 2, 4, 128, max_position_embeddings=256),
    # the CPU benchmark's model: d_model 512, 6+6 layers, the real 250,054-token vocabulary
    "base": MBartShape(512, 6, 6, 8, 2048, vocab_size=MBART50_VOCAB_SIZE),
    # facebook/mbart-large-50-many-to-many-mmt's shape: 611M parameters with its tied output layer, 867M here
    # (untied); the compute per token is the same
    "large": MBartShape(1024, 12, 12, 16, 4096, vocab_size=MBART50_VOCAB_SIZE),
}


def sample_texts(limit: int | None = None) -> list[str]:
    """Real Korean reviews bundled with the package (nsmc4 sample, CC0), to train tokenizers on."""
    import polars as pl

    path = resources.files("engine") / "data" / "sample" / "train.csv"
    texts = pl.read_csv(str(path), infer_schema_length=None)["text"].drop_nulls().to_list()
    return texts[:limit] if limit else texts


def _pad_pieces(model_proto: bytes, n_pieces: int) -> bytes:
    """Append pieces until the sentencepiece model has `n_pieces`.

    The extra pieces are Hangul syllable pairs with a score far below every trained piece, so encoding real
    text never picks them (tokenization stays that of the trained pieces), while a random model can still
    emit them and they decode to text like any other piece.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model_proto)
    existing = {p.piece for p in proto.pieces}
    if len(existing) > n_pieces:
        raise ValueError(f"the trained tokenizer already has {len(existing)} pieces, more than {n_pieces}")
    score = min(p.score for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL) - 10.0
    syllables = 11_172  # U+AC00..U+D7A3
    i = 0
    while len(proto.pieces) < n_pieces:
        first, second = divmod(i, syllables)
        piece = ("▁" if i % 2 else "") + chr(0xAC00 + first % syllables) + chr(0xAC00 + second)
        i += 1
        if piece not in existing:
            proto.pieces.add(piece=piece, score=score, type=pb.ModelProto.SentencePiece.NORMAL)
    return proto.SerializeToString()


def build_tokenizer(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    *,
    sp_vocab_size: int = 1000,
    vocab_size: int | None = None,
    threads: int = 1,
):
    """Train a sentencepiece unigram model on `texts` + English lines, save it in `out_dir` as
    `sentencepiece.bpe.model`, and return the `MBart50Tokenizer` loaded from it.

    `sp_vocab_size` is a target (fewer pieces when the texts are too few); `vocab_size` pads the
    tokenizer to exactly that many ids (250,054 = the real mBART-50 vocabulary).
    """
    import sentencepiece as spm
    from transformers import MBart50Tokenizer

    lines = [*(texts if texts is not None else sample_texts(400)), *ENGLISH_LINES * 4]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        vocab_size=sp_vocab_size,
        model_type="unigram",
        # the fairseq layout MBart50Tokenizer expects: <unk>, <s>, </s> first, no padding piece
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        character_coverage=0.9995,
        num_threads=threads,
        minloglevel=2,
    )
    proto = buffer.getvalue()
    if vocab_size is not None:
        proto = _pad_pieces(proto, vocab_size - _SP_PIECES_PER_EXTRA)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sentencepiece.bpe.model").write_bytes(proto)
    tokenizer = MBart50Tokenizer.from_pretrained(out_dir, src_lang="ko_KR", tgt_lang="en_XX", bos_token="<s>")
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise RuntimeError(f"built a tokenizer of {len(tokenizer)} ids, expected {vocab_size}")
    return tokenizer


def mbart_config(shape: MBartShape, tokenizer):
    """An MBartConfig like facebook/mbart-large-50's, with the fields CTranslate2's converter reads."""
    from transformers import MBartConfig

    return MBartConfig(
        vocab_size=shape.vocab_size or len(tokenizer),
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.attention_heads,
        decoder_attention_heads=shape.attention_heads,
        encoder_ffn_dim=shape.ffn_dim,
        decoder_ffn_dim=shape.ffn_dim,
        max_position_embeddings=shape.max_position_embeddings,
        activation_function="gelu",
        # without tokenizer_class the converter picks the mBART-25 decoder start (silently wrong output);
        # without normalize_before it fails; both are in the real checkpoint's config.json
        tokenizer_class="MBart50Tokenizer",
        normalize_before=True,
        normalize_embedding=True,
        add_final_layer_norm=True,
        scale_embedding=True,
        # untied: a random tied output layer only repeats the language code and decodes to empty strings
        tie_word_embeddings=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        architectures=["MBartForConditionalGeneration"],
    )


def build_random_mbart(
    out_dir: str | Path,
    shape: MBartShape | str = "tiny",
    *,
    texts: Sequence[str] | None = None,
    sp_vocab_size: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
) -> Path:
    """Save a random-weight MBartForConditionalGeneration + tokenizer to `out_dir`; returns the folder.

    Default texts: 400 bundled reviews (tiny) or all 20,000 (other shapes, about 6 s to train).
    `dtype` float16/bfloat16 halves the folder of large shapes; `device="cuda"` initializes faster.
    """
    import torch
    from transformers import GenerationConfig, MBartForConditionalGeneration

    shape = SHAPES[shape] if isinstance(shape, str) else shape
    out_dir = Path(out_dir)
    small = shape.vocab_size is None and shape.d_model < 256
    if texts is None:
        texts = sample_texts(400 if small else None)
    tokenizer = build_tokenizer(
        out_dir,
        texts,
        sp_vocab_size=sp_vocab_size or (1000 if small else 8000),
        vocab_size=shape.vocab_size,
        threads=1 if small else 2,
    )
    config = mbart_config(shape, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = MBartForConditionalGeneration(config)
    with torch.no_grad():
        # transformers 5 unties every embedding when tie_word_embeddings=False; the real checkpoint shares one
        # input embedding between encoder and decoder. Equal copies keep that: CTranslate2 stores equal
        # variables once, and benchmarks can re-tie them with `model.set_input_embeddings(model.model.shared)`.
        for embed in (model.model.encoder.embed_tokens, model.model.decoder.embed_tokens):
            embed.weight.copy_(model.model.shared.weight)
    model = model.to(getattr(torch, dtype)).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # tokenizer.json + tokenizer_config.json; the .model stays beside
    # no generation defaults in the folder (mbart-large-50 ships num_beams=5, max_length=200): callers decide
    GenerationConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2, forced_eos_token_id=2
    ).save_pretrained(out_dir)
    n_params = count_parameters(shape, config.vocab_size)
    log.info(
        "saved a random mBART-50 (%.1fM parameters with one shared input embedding, vocab %d) to %s",
        n_params / 1e6,
        config.vocab_size,
        out_dir,
    )
    return out_dir


def count_parameters(shape: MBartShape, vocab_size: int) -> int:
    """Parameters of an mBART of this shape with one input embedding shared by encoder and decoder and an
    untied output layer (as CTranslate2 stores these models), without building it. The real checkpoint
    also ties the output layer: subtract `vocab_size * d_model`."""
    d, f = shape.d_model, shape.ffn_dim
    attention = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    encoder_layer = attention + ffn + 2 * 2 * d
    decoder_layer = 2 * attention + ffn + 3 * 2 * d
    positions = 2 * (shape.max_position_embeddings + 2) * d
    norms = 2 * 2 * 2 * d  # layernorm_embedding + final layer_norm, encoder and decoder
    embeddings = 2 * vocab_size * d  # shared input embeddings + untied lm_head
    return shape.encoder_layers * encoder_layer + shape.decoder_layers * decoder_layer + positions + norms + embeddings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a random-weight mBART-50 folder (no downloads).")
    p.add_argument("shape", choices=sorted(SHAPES), help="tiny (tests), base (CPU benchmark), large (real shape)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_random_mbart(args.out_dir, args.shape, seed=args.seed, dtype=args.dtype)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
