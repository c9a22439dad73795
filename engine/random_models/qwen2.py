"""Random-weight Qwen2 models built locally, for tests and benchmarks on machines without a model hub.

- `build_tokenizer`: a byte-level BPE trained on the given texts (Korean reviews by default) with Qwen's
  special tokens and a ChatML chat template, wrapped as a `PreTrainedTokenizerFast`.
- `build_tiny_qwen2`: tokenizer + a random `Qwen2ForCausalLM` of any size, saved in bf16 (a folder that
  both vLLM and transformers load like a real checkpoint). With random weights the text is gibberish:
  test counts, order, shapes and provenance, never wording.
- `write_shape_config`: a config-only folder (config.json + tokenizer, no weights) of a real model shape
  such as Qwen2-7B, for vLLM's `load_format="dummy"` on a GPU node.

    python -m engine.random_models.qwen2 tiny /tmp/tiny-qwen2
    python -m engine.random_models.qwen2 bench /tmp/qwen2-90m      # d_model 1024, 8 layers, ~90M parameters
    python -m engine.random_models.qwen2 qwen2-7b /tmp/qwen2-7b-shape
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2's own template (ChatML), including its default system message when none is given.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Qwen2Shape:
    """The sizes that set a Qwen2 model's cost. `vocab_size=None` = the tokenizer's size, padded to 64."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048
    vocab_size: int | None = None
    tie_word_embeddings: bool = True
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6


SHAPES = {
    # seconds to build, fast in every engine: for tests
    # (head_dim 32: vLLM's CPU attention supports head sizes 32, 64, 80, ... only)
    "tiny": Qwen2Shape(64, 2, 2, 1, 128, max_position_embeddings=1024),
    # ~90M parameters: the CPU benchmark's model (d_model 1024, 8 layers, GQA like Qwen2)
    "bench": Qwen2Shape(1024, 8, 16, 2, 2560),
    # the real spow12/Ko-Qwen2-7B-Instruct / Qwen2-7B shape: config only, for vLLM load_format="dummy"
    "qwen2-7b": Qwen2Shape(
        3584, 28, 28, 4, 18944, max_position_embeddings=32768, vocab_size=152064, tie_word_embeddings=False
    ),
}


def sample_texts(limit: int | None = None) -> list[str]:
    """Real Korean reviews bundled with the package (nsmc4 sample, CC0), to train tokenizers on."""
    import polars as pl

    path = resources.files("engine") / "data" / "sample" / "train.csv"
    texts = pl.read_csv(str(path), infer_schema_length=None)["text"].drop_nulls().to_list()
    return texts[:limit] if limit else texts


def build_tokenizer(texts: Iterable[str] | None = None, *, vocab_size: int = 2000):
    """Byte-level BPE (Qwen's kind of tokenizer) trained on `texts`, with ChatML special tokens and template.

    EOS is `<|im_end|>` (the end of an assistant turn, as in Qwen instruct models), padding `<|endoftext|>`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts) if texts is not None else sample_texts(5000)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Chat markup and JSON punctuation the prompts use, so they tokenize like in a real model.
    tok.train_from_iterator([*texts, "system user assistant\n", '["", ""]'], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    wrapped.chat_template = CHATML_TEMPLATE
    wrapped.padding_side = "left"  # decoder-only batched generation pads on the left
    return wrapped


def qwen2_config(shape: Qwen2Shape, tokenizer):
    from transformers import Qwen2Config

    vocab = shape.vocab_size or -(-len(tokenizer) // 64) * 64
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=shape.rope_theta,
        rms_norm_eps=shape.rms_norm_eps,
        tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["Qwen2ForCausalLM"],
        dtype="bfloat16",
        use_sliding_window=False,
    )


def build_tiny_qwen2(
    out_dir: str | Path,
    shape: Qwen2Shape | str = "tiny",
    *,
    texts: Sequence[str] | None = None,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    """Save a random-weight Qwen2ForCausalLM + tokenizer (bf16) to `out_dir`; returns the folder."""
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    shape = SHAPES[shape] if isinstance(shape, str) else shape
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    config = qwen2_config(shape, tokenizer)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # no sampling defaults in the folder: the engine's options are the only ones that apply
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    ).save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("saved a random Qwen2 (%.1fM parameters, vocab %d) to %s", n_params / 1e6, config.vocab_size, out_dir)
    return out_dir


def write_shape_config(out_dir: str | Path, shape: Qwen2Shape | str = "qwen2-7b", *, vocab_size: int = 8000) -> Path:
    """A folder with config.json and a tokenizer but no weights, for vLLM `load_format="dummy"`.

    The tokenizer is a small local BPE (ids < the model's vocab); the model keeps the real vocab size so
    the output layer costs what it costs in the real model.
    """
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(vocab_size=vocab_size)
    config = qwen2_config(shape, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "SHAPE.json").write_text(json.dumps(asdict(shape), indent=2) + "\n", encoding="utf-8")
    return out_dir


def count_parameters(shape: Qwen2Shape, vocab_size: int) -> int:
    """Parameters of a Qwen2 of this shape (q/k/v biases included), without building it."""
    h, kv = shape.hidden_size, shape.num_key_value_heads * (shape.hidden_size // shape.num_attention_heads)
    attn = h * h + h + 2 * (h * kv + kv) + h * h
    mlp = 3 * h * shape.intermediate_size
    layer = attn + mlp + 2 * h
    embed = vocab_size * h * (1 if shape.tie_word_embeddings else 2)
    return shape.num_hidden_layers * layer + embed + h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a random-weight Qwen2 folder (no downloads).")
    p.add_argument("shape", choices=sorted(SHAPES), help="tiny / bench build weights; qwen2-7b writes a config only")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary (default: 2000 tiny, 8000 others)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    vocab = args.vocab_size or (2000 if args.shape == "tiny" else 8000)
    if args.shape == "qwen2-7b":
        write_shape_config(args.out_dir, args.shape, vocab_size=vocab)
    else:
        build_tiny_qwen2(args.out_dir, args.shape, vocab_size=vocab, seed=args.seed)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
