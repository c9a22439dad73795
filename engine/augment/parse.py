"""Turning an LLM's answer into paraphrase candidates, each kept or dropped with a reason.

The prompt asks for a JSON list of strings, and with vLLM's guided decoding the answer IS such a list;
but free-running models wrap it in code fences and chatter, fall back to numbered lines, echo the prompt or
the original ("원문: ..."), or get cut off at the token limit. The parser tries, in order:

1. a JSON list anywhere in the answer (inside ``` fences first), or a JSON object holding one
   (`{"paraphrases": [...]}`) -> format `json`;
2. a JSON list cut off by the token limit: every complete string is a candidate, the unfinished one is
   dropped as `truncated` -> format `json_truncated`;
3. lines: numbered (`1.`, `2)`, `①`) or bulleted (`-`, `*`, `•`) lines when there are any (the other lines
   are chatter and ignored), otherwise every line -> format `lines`;
4. nothing usable -> the whole answer as one `unparsable` drop -> format `none`.

Each candidate is cleaned (list markers, labels such as `표현 1:` and wrapping quotes removed) and judged.
Drop reasons, in the order they are checked:

- `empty`: no letter or digit left after cleaning ("", "^^", "...")
- `not_a_string`: a JSON item that is not a string (a number, an object)
- `truncated`: cut off by the token limit (the last item of an answer that stopped at max tokens)
- `echo_original`: a line labelled as the original (`원문: ...`, `Original: ...`)
- `identical_to_source`: the source itself, ignoring spacing, punctuation and case
- `echo_prompt`: a piece of the instruction (at least 4 characters that occur in the prompt but not in
  the source), e.g. the template's example `첫 번째 표현`
- `duplicate`: the same as an earlier candidate for this source (same comparison as above)
- `beyond_n`: a good candidate past the `n` that were asked for from this answer

All functions here are pure: text in, `Parsed` out.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DROP_REASONS = (
    "empty",
    "not_a_string",
    "truncated",
    "echo_original",
    "identical_to_source",
    "echo_prompt",
    "duplicate",
    "beyond_n",
    "unparsable",
)

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_MARKER = re.compile(r"^\s*(?:[-*•·‣▪◦–]|\(?\d{1,2}\s*[.)\]:：]|\d{1,2}\s*번\s*[.:)：]?|[①-⑳])\s*")
_ORIGINAL_LABEL = re.compile(r"^\s*(?:원문|원래\s*문장|원본|original(?:\s+sentence)?)\s*[:：]\s*", re.IGNORECASE)
_LABEL = re.compile(
    r"^\s*(?:다른\s*표현|바꾼\s*문장|바꾼\s*표현|변환|결과|답변|답|표현|문장|예시|paraphrase|rewrite|output|answer)"
    r"\s*\d{0,2}\s*[:：]\s*",
    re.IGNORECASE,
)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»"))
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_MIN_PROMPT_ECHO = 4  # characters (without spaces); shorter pieces occur in real paraphrases by chance


@dataclass(frozen=True)
class Candidate:
    """One generated text; `drop_reason` is None when it is kept."""

    text: str
    drop_reason: str | None = None


@dataclass(frozen=True)
class Parsed:
    """The candidates of one answer, in answer order; `format` says how it was read."""

    format: str  # json | json_truncated | lines | none
    candidates: tuple[Candidate, ...]

    @property
    def kept(self) -> list[str]:
        return [c.text for c in self.candidates if c.drop_reason is None]

    @property
    def dropped(self) -> list[tuple[str, str]]:
        return [(c.text, c.drop_reason) for c in self.candidates if c.drop_reason is not None]


def parse_output(
    output: str, *, source: str, n: int | None = None, prompt: str = "", truncated: bool = False
) -> Parsed:
    """Candidates of one answer to the prompt `prompt` about `source`; see the module docstring.

    `n`: how many rewrites were asked for (extra good ones are dropped as `beyond_n`; None = keep all).
    `truncated`: the answer stopped at the token limit (vLLM finish_reason "length"), so its last line
    may be cut off; a cut-off JSON string is always detected.
    """
    return parse_outputs([output], source=source, n=n, prompt=prompt, truncated=[truncated])[0]


def parse_outputs(
    outputs: Sequence[str],
    *,
    source: str,
    n: int | None = None,
    prompt: str = "",
    truncated: Sequence[bool] | None = None,
) -> list[Parsed]:
    """Several answers for one source (sampled completions): duplicates are judged across all of them,
    `n` applies to each answer."""
    truncated = truncated if truncated is not None else [False] * len(outputs)
    judge = _Judge(source, prompt)
    return [_parse_one(o, n, t, judge) for o, t in zip(outputs, truncated, strict=True)]


def drop_counts(parsed: Iterable[Parsed]) -> Counter:
    """How many candidates were dropped for each reason, plus `kept`."""
    counts: Counter = Counter()
    for p in parsed:
        for c in p.candidates:
            counts[c.drop_reason or "kept"] += 1
    return counts


# ------------------------------------------------------------------------------------------- internals
def _parse_one(output: str, n: int | None, truncated: bool, judge: _Judge) -> Parsed:
    text = _THINK.sub("", unicodedata.normalize("NFC", output or "")).strip()
    if not text:
        return Parsed("none", (Candidate("", "empty"),))
    raw: list[tuple[object, str | None]]  # (item, reason decided by the reader) in answer order
    items = _json_list(text)
    if items is not None:
        fmt, raw = "json", [(item, None) for item in items]
    elif (partial := _partial_json_list(text)) is not None:
        fmt, raw = "json_truncated", partial
    else:
        lines = _lines(text)
        if not lines:
            return Parsed("none", (Candidate(text, "unparsable"),))
        fmt, raw = "lines", [(line, None) for line in lines]
        if truncated:
            raw[-1] = (raw[-1][0], "truncated")
    kept = 0
    out = []
    for item, reason in raw:
        if not isinstance(item, str):
            out.append(Candidate(json.dumps(item, ensure_ascii=False), "not_a_string"))
            continue
        cleaned, is_original = _clean(item)
        reason = reason or judge(cleaned, is_original)
        if reason is None and n is not None and kept >= n:
            reason = "beyond_n"
        if reason is None:
            kept += 1
            judge.seen.add(_key(cleaned))
        out.append(Candidate(cleaned, reason))
    return Parsed(fmt, tuple(out))


class _Judge:
    """Drop decisions that depend on the source, the prompt and the candidates kept so far."""

    def __init__(self, source: str, prompt: str) -> None:
        self.source_key = _key(source)
        source_norm = _squash(source)
        self.source_norm = source_norm
        # the instruction without the source sentence: what an echo of the prompt would repeat
        self.instruction = _squash(prompt).replace(source_norm, "\0") if source_norm else _squash(prompt)
        self.seen: set[str] = set()

    def __call__(self, text: str, is_original: bool) -> str | None:
        key = _key(text)
        if not key:
            return "empty"
        if is_original:
            return "echo_original"
        if key == self.source_key:
            return "identical_to_source"
        squashed = _squash(text)
        if (
            len(squashed.replace(" ", "")) >= _MIN_PROMPT_ECHO
            and squashed in self.instruction
            and squashed not in self.source_norm
        ):
            return "echo_prompt"
        if key in self.seen:
            return "duplicate"
        return None


def _json_list(text: str) -> list | None:
    """The first JSON list (or object holding a list) that contains a string: fenced blocks first."""
    decoder = json.JSONDecoder(strict=False)  # grammars and models let raw control characters into strings
    regions = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for region in regions:
        for match in re.finditer(r"[\[{]", region):
            try:
                value, _ = decoder.raw_decode(region, match.start())
            except json.JSONDecodeError:
                continue
            items = _as_list(value)
            if items is not None and any(isinstance(i, str) for i in items):
                return items
    return None


def _as_list(value: object) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, list):
                return v
        if value and all(isinstance(v, str) for v in value.values()):  # {"1": "...", "2": "..."}
            return list(value.values())
    return None


def _partial_json_list(text: str) -> list[tuple[object, str | None]] | None:
    """Items of a JSON list of strings that was cut off: complete strings, then the unfinished one."""
    start = re.search(r'\[\s*"', text)
    if start is None:
        return None
    pos = start.end() - 1
    items: list[tuple[object, str | None]] = []
    while pos < len(text):
        literal = _STRING_LITERAL.match(text, pos)
        if literal is None:
            tail = text[pos + 1 :] if text[pos] == '"' else text[pos:]
            items.append((_unescape(tail), "truncated"))
            break
        items.append((_unescape(literal.group()[1:-1]), None))
        rest = re.match(r"\s*,\s*", text[literal.end() :])
        if rest is None:
            break
        pos = literal.end() + rest.end()
    return items


def _unescape(body: str) -> str:
    try:
        return json.loads(f'"{body}"', strict=False)
    except json.JSONDecodeError:
        return body.replace('\\"', '"').replace("\\n", " ")


def _lines(text: str) -> list[str]:
    """Answer lines that may be paraphrases: the marked ones if any line is numbered or bulleted."""
    lines = [line.strip() for line in text.replace("```", "\n").splitlines()]
    lines = [
        line for line in lines if line and not re.fullmatch(r"[\[\]{},`]+|[A-Za-z]+", line) and not _is_json_data(line)
    ]
    marked = [line for line in lines if _MARKER.match(line)]
    if marked:
        return marked
    # an unmarked line ending in a colon introduces what follows ("다음은 두 가지 표현입니다:")
    return [line for line in lines if not line.endswith((":", "："))]


def _is_json_data(line: str) -> bool:
    """A line that is JSON but not text (a number, a list of numbers): structure, not a paraphrase."""
    try:
        return not isinstance(json.loads(line), str)
    except json.JSONDecodeError:
        return False


def _clean(item: str) -> tuple[str, bool]:
    """(text without list marker, label and wrapping quotes; whether it was labelled as the original)."""
    text = " ".join("".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in item).split())
    text = _MARKER.sub("", text, count=1)
    is_original = bool(_ORIGINAL_LABEL.match(text))
    text = _ORIGINAL_LABEL.sub("", text, count=1) if is_original else _LABEL.sub("", text, count=1)
    text = text.strip().rstrip(",").strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTES:
            if text.startswith(left) and text.endswith(right):
                text, changed = text[len(left) : -len(right)].strip(), True
    return text, is_original


def _squash(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _key(text: str) -> str:
    """Comparison key: case, spacing and punctuation ignored ("재밌다." == "재밌다")."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text).casefold() if ch.isalnum())
