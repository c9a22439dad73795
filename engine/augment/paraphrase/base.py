"""What both engines share: the answer records, the `Paraphraser` interface, per-source seeds and the
guided JSON schema."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.augment.paraphrase.config import ParaphraseConfig, sampling_given
from engine.augment.paraphrase.model import ModelInfo
from engine.augment.parse import Parsed, parse_outputs
from engine.augment.prompts import messages
from engine.augment.sampling import describe, effective_sampling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One sampled answer: its text, why it stopped ("stop" | "length"), and its length in tokens."""

    text: str
    finish_reason: str | None
    tokens: int


@dataclass(frozen=True)
class SourceResult:
    """Everything generated for one source text."""

    prompt: str  # the prompt as the model saw it, rendered by the chat template
    completions: tuple[Completion, ...]
    parsed: tuple[Parsed, ...]  # one per completion

    @property
    def kept(self) -> list[str]:
        return [text for p in self.parsed for text in p.kept]

    @property
    def output_tokens(self) -> int:
        return sum(c.tokens for c in self.completions)


class Paraphraser:
    """What both backends share: prompts, parsing, results. Subclasses implement `_complete`."""

    backend = "?"

    def __init__(self, config: ParaphraseConfig, info: ModelInfo) -> None:
        self.config = config
        self.info = info
        self.guided = False  # set by the backend: whether answers are constrained to the JSON schema
        log.info("sampling: %s", describe(sampling_given(config), info.generation))

    def sampling(self, config: ParaphraseConfig | None = None) -> dict:
        """The effective temperature, top_p, top_k, min_p and repetition_penalty (`engine.augment.sampling`)."""
        return effective_sampling(sampling_given(config or self.config), self.info.generation)

    def conversations(self, texts: Sequence[str], config: ParaphraseConfig | None = None) -> list[list[dict]]:
        c = config or self.config
        return [messages(t, n=c.n, template=c.prompt_template, system=c.system_prompt) for t in texts]

    def params(self, config: ParaphraseConfig | None = None) -> dict:
        """The provenance written into every output row (`params` column)."""
        c = config or self.config
        return {
            "prompt_version": c.prompt_version,
            "n": c.n,
            "samples": c.samples,
            **self.sampling(c),
            "max_tokens": c.max_tokens,
            "seed": c.seed,
            "seed_per_source": c.seed_per_source,
            "guided": self.guided and c.guided and not c.ignore_eos,
            "backend": self.backend,
        }

    def generate(self, texts: Sequence[str], *, progress=None, **options) -> list[SourceResult]:
        """One `SourceResult` per text, in input order. `options` override sampling fields of the config
        for this call (`SAMPLING_FIELDS`); `progress` is a tqdm-like factory (or True) for a progress bar."""
        config = self.config.with_options(**options)
        texts = list(texts)
        if not texts:
            return []
        conversations = self.conversations(texts, config)
        raw = self._complete(texts, conversations, config, progress)
        results = []
        for text, conversation, (prompt, completions) in zip(texts, conversations, raw, strict=True):
            parsed = parse_outputs(
                [c.text for c in completions],
                source=text,
                n=config.n,
                prompt=conversation[-1]["content"],
                truncated=[c.finish_reason == "length" for c in completions],
            )
            results.append(SourceResult(prompt, tuple(completions), tuple(parsed)))
        return results

    def paraphrase(self, texts: Sequence[str], **options) -> list[list[str]]:
        """Kept paraphrases per text (input order): at most `n` x `samples` each, possibly none."""
        return [r.kept for r in self.generate(texts, **options)]

    def _complete(
        self, texts: list[str], conversations: list[list[dict]], config: ParaphraseConfig, progress
    ) -> list[tuple[str, list[Completion]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and, for vLLM, stop the engine and its processes)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request_seed(seed: int, text: str) -> int:
    """A per-source seed from the job seed and the text: the same source gets the same sample wherever
    it lands in a batch or a chunk (so a resumed job generates what an uninterrupted one would)."""
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31


def json_schema(n: int, texts: Sequence[str]) -> dict:
    """A JSON list of exactly `n` non-empty strings. The length cap (twice the longest source plus some
    slack, rounded up to a multiple of 64 so that chunks share compiled grammars) keeps a rambling model
    from spending every token inside one string."""
    longest = max((len(t) for t in texts), default=0)
    item = {"type": "string", "minLength": 1, "maxLength": 64 * math.ceil((2 * longest + 32) / 64)}
    return {"type": "array", "items": item, "minItems": n, "maxItems": n}
