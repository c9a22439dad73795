"""The paraphrase prompt: a Korean instruction asking for a JSON list of N rewrites, and its versioning.

The default follows the motivating notebook's prompt (translated: "Write the following sentence in 2 other
natural expressions with the same meaning. Use colloquial, everyday expressions; slightly ungrammatical is
fine if it sounds natural. Original: {sentence}") and adds one line asking for a JSON list of strings, so
the answer parses reliably (and matches the guided-JSON schema when vLLM enforces it).

A template is plain text with the placeholders `{text}` (the source sentence, required) and `{n}` (how many
rewrites); other braces are left alone, so JSON examples need no escaping. The prompt version that goes
into every output row is `ko-json-v1` for the defaults, and `custom-<hash>` of template and system prompt
otherwise, so rows made with different prompts never look alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.errors import InputError

DEFAULT_VERSION = "ko-json-v1"

DEFAULT_TEMPLATE = (
    "다음 문장을 같은 의미의 다른 자연스러운 표현 {n}가지로 바꿔 써 주세요. "
    "구어체나 일상적인 표현을 써도 되고, 자연스럽다면 문법이 조금 틀려도 괜찮습니다.\n"
    '답은 문자열 {n}개로 된 JSON 배열 하나로만 쓰세요. 예: ["첫 번째 표현", "두 번째 표현"]\n'
    "원문: {text}"
)

DEFAULT_SYSTEM_PROMPT = "당신은 한국어 문장을 뜻은 그대로 두고 자연스럽게 바꿔 쓰는 도우미입니다."


def check_template(template: str, *, source: str = "the prompt template") -> None:
    """A template must place the source text; `InputError` otherwise."""
    if "{text}" not in template:
        raise InputError(
            f"{source} has no {{text}} placeholder, so the sentence to paraphrase would never reach the "
            "model. Add {text} where the sentence goes (and optionally {n} for the number of rewrites)."
        )


def load_template(path: str | Path) -> str:
    """Read a template file (UTF-8 text with a `{text}` and optionally a `{n}` placeholder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--prompt-file {path}: no such file. Pass a UTF-8 text file with a {{text}} placeholder.")
    try:
        template = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InputError(f"--prompt-file {path} is not UTF-8 text ({exc}). Save it as UTF-8.") from exc
    check_template(template, source=f"--prompt-file {path}")
    return template


def render_user(template: str, text: str, n: int) -> str:
    """The user message for one source text (plain substitution: other braces stay as they are)."""
    return template.replace("{n}", str(n)).replace("{text}", text)


def messages(text: str, *, n: int, template: str = DEFAULT_TEMPLATE, system: str | None = DEFAULT_SYSTEM_PROMPT):
    """One chat conversation (OpenAI-style messages) asking for `n` rewrites of `text`.

    An empty or None system prompt leaves the system turn to the model's chat template (Qwen's adds its
    default "You are a helpful assistant.").
    """
    conversation = [{"role": "system", "content": system}] if system else []
    conversation.append({"role": "user", "content": render_user(template, text, n)})
    return conversation


def prompt_version(template: str, system: str | None) -> str:
    """`ko-json-v1` for the defaults, else `custom-` + a hash of template and system prompt."""
    if template == DEFAULT_TEMPLATE and system == DEFAULT_SYSTEM_PROMPT:
        return DEFAULT_VERSION
    digest = hashlib.sha256(f"{template}\0{system or ''}".encode()).hexdigest()[:10]
    return f"custom-{digest}"
