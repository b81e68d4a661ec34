"""Answers written by a large language model, grounded in knowledge-base hits (KB-5).

A tenant configures one or more :class:`kbase.models.LlmProvider` rows: any OpenAI-compatible
chat-completions endpoint, reached with the ``openai`` client. :func:`grounded_answer` tries the
active ones in priority order — each with its own timeout for the whole answer and no retries —
and streams the text through a callback as it arrives. The prompt gives the model the numbered
hits and asks it to cite them as ``[n]`` and to reply :data:`UNKNOWN` when they do not cover the
question, so the robot can say it does not know instead of inventing an answer.

These calls take seconds: they run in Celery workers (``kefu.tasks``), never in a web or
websocket process.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kbase.models import LlmProvider

logger = logging.getLogger(__name__)

#: vendor → (base URL, default model)
PRESETS: dict[str, tuple[str, str]] = {
    LlmProvider.Preset.OLLAMA: ("http://localhost:11434/v1", "qwen2.5:7b"),
    LlmProvider.Preset.DEEPSEEK: ("https://api.deepseek.com/v1", "deepseek-chat"),
    LlmProvider.Preset.ZHIPU: ("https://open.bigmodel.cn/api/paas/v4", "glm-4-flash"),
    LlmProvider.Preset.QWEN: ("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus"),
    LlmProvider.Preset.MOONSHOT: ("https://api.moonshot.cn/v1", "moonshot-v1-8k"),
    LlmProvider.Preset.OPENAI: ("https://api.openai.com/v1", "gpt-4o-mini"),
}

#: what the model is told to answer when the sources do not cover the question
UNKNOWN = "[[UNKNOWN]]"
#: characters of each hit given to the model
SOURCE_CHARS = 1500
_CITATION = re.compile(r"\[(\d{1,2})\]")


class LlmUnavailableError(Exception):
    """No active provider, or every provider failed or timed out."""


@dataclass
class Answer:
    """A model's answer: ``text`` (citations kept), ``cited`` (1-based source numbers used),
    ``unknown`` (the model said the sources do not cover it), the provider's name."""

    text: str
    provider: str
    unknown: bool = False
    cited: list[int] = field(default_factory=list)


def providers() -> list[LlmProvider]:
    """Active providers of the current tenant, in the order they are tried."""
    return list(LlmProvider.objects.filter(is_active=True).order_by("priority", "pk"))


def configured() -> bool:
    """Whether the current tenant has an active provider."""
    return LlmProvider.objects.filter(is_active=True).exists()


def endpoint(provider: LlmProvider) -> tuple[str, str]:
    """``(base_url, model)`` of a provider, the preset's where the row leaves them empty."""
    base_url, model = PRESETS.get(provider.preset, ("", ""))
    return (provider.base_url or base_url, provider.model or model)


def _system_prompt(language: str) -> str:
    lang = "English" if language.startswith("en") else "简体中文 (Simplified Chinese)"
    return (
        "You are a customer-service assistant. Answer the customer's question using ONLY the "
        "numbered sources below. Cite the sources you use as [1], [2] … right after the "
        "sentence that uses them. Be brief and friendly. If the sources do not answer the "
        f"question, reply with exactly {UNKNOWN} and nothing else. Answer in {lang} unless the "
        "customer writes in another language."
    )


def build_messages(
    question: str, hits: list[dict[str, Any]], *, language: str, history: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """The chat messages sent to the model: a system prompt with the numbered sources, the last
    turns of the conversation (``history``: ``(role, text)`` with role ``user``/``assistant``),
    then the question."""
    sources = "\n\n".join(
        f"[{n}] {hit['title']}\n{(hit.get('text') or hit.get('snippet') or '')[:SOURCE_CHARS]}"
        for n, hit in enumerate(hits, start=1)
    )
    messages = [{"role": "system", "content": f"{_system_prompt(language)}\n\nSources:\n{sources}"}]
    messages += [{"role": role, "content": text} for role, text in history[-6:]]
    messages.append({"role": "user", "content": question})
    return messages


def grounded_answer(
    question: str,
    hits: list[dict[str, Any]],
    *,
    language: str = "zh-hans",
    history: list[tuple[str, str]] | None = None,
    on_delta: Callable[[str], None] | None = None,
) -> Answer:
    """Ask the providers in turn for an answer to ``question`` from ``hits`` (search results of
    :func:`kbase.search.search`). ``on_delta(text)`` receives the answer as it streams; it is
    not called for an :data:`UNKNOWN` reply, and a provider that fails after it started
    streaming is not retried with another (the reader already saw part of the answer).

    Raises :class:`LlmUnavailableError` when none is configured or none answered in time.
    """
    messages = build_messages(question, hits, language=language, history=history or [])
    errors = []
    for provider in providers():
        started = [False]
        try:
            text = _complete(provider, messages, on_delta, started)
        except Exception as exc:  # any vendor failure moves on to the next one
            logger.warning("LLM provider %s failed: %s", provider.name, exc)
            errors.append(f"{provider.name}: {exc}")
            if started[0]:
                raise LlmUnavailableError("; ".join(errors)) from exc
            continue
        stripped = text.strip()
        if not stripped or UNKNOWN in stripped:
            return Answer(text="", provider=provider.name, unknown=True)
        cited = sorted({int(n) for n in _CITATION.findall(stripped) if 0 < int(n) <= len(hits)})
        return Answer(text=stripped, provider=provider.name, cited=cited)
    raise LlmUnavailableError("; ".join(errors) or "no LLM provider is configured")


def _complete(
    provider: LlmProvider,
    messages: list[dict[str, str]],
    on_delta: Callable[[str], None] | None,
    started: list[bool],
) -> str:
    """One streamed chat completion; the text. Holds back the first characters until they
    cannot be the start of :data:`UNKNOWN`. Raises on HTTP errors and on the timeout."""
    import openai

    from weiyu import outbound

    base_url, model = endpoint(provider)
    if not base_url or not model:
        raise ValueError("base URL and model are required")
    # the base URL is the tenant's choice: checked here for a clear message, and again on
    # every connection by the guarded client (weiyu.outbound)
    outbound.check_url(base_url)
    client = openai.OpenAI(
        base_url=base_url,
        api_key=provider.api_key or "none",
        timeout=float(provider.timeout_s),
        max_retries=0,
        http_client=outbound.guarded_client(timeout_s=float(provider.timeout_s)),
    )
    deadline = time.monotonic() + provider.timeout_s
    stream = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        temperature=provider.temperature,
        stream=True,
    )
    parts: list[str] = []
    held = ""
    try:
        for chunk in stream:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer within {provider.timeout_s} s")
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta.content or ""
            if not delta:
                continue
            parts.append(delta)
            if on_delta is None:
                continue
            if not started[0]:
                held += delta
                probe = held.lstrip()
                if UNKNOWN.startswith(probe) or probe.startswith(UNKNOWN):
                    continue  # may still be the "unknown" reply: show nothing yet
                started[0] = True
                on_delta(held)
            else:
                on_delta(delta)
    finally:
        stream.close()
    return "".join(parts)
