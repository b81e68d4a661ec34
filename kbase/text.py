"""Text for knowledge-base search and display: word segmentation and safe Markdown.

Search runs on a stock PostgreSQL: each item's text is turned into space-separated tokens here and
stored with ``to_tsvector('simple', …)``. Chinese has no spaces, so runs of CJK characters are cut
by jieba (https://github.com/fxsjy/jieba) in "search" mode, which yields the words and their
shorter parts (中华人民共和国 → 中华, 华人, 人民, 共和, 共和国, 中华人民共和国); other scripts are
split into lower-case words. Queries are cut the same way.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from functools import lru_cache

import markdown as md
import nh3

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"\w+", re.UNICODE)

#: tags and attributes kept in rendered articles; everything else is stripped (nh3 / ammonia)
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "td": {"align"},
    "th": {"align"},
}


@lru_cache(maxsize=1)
def _jieba():  # loading the dictionary takes about a second: once per process, on first use
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


#: words a query is better off without: they match nearly every item (the ``simple`` text
#: search configuration keeps them). Dropped from queries only, and only when something is left.
_STOPWORDS_TEXT = """a an and are as at be but by can could did do does for from had has have how i if in is it
its me my no not of on or our should so than that the their them then there these they this
to was we what when where which who why will with would you your
的 了 吗 呢 吧 啊 是 我 你 他 她 它 我们 你们 在 有 和 与 及 或 就 都 也 要 会 能 可以 怎么 怎样
如何 什么 哪 哪些 为什么 请问 一下 这个 那个"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def tokens(text: str, *, for_query: bool = False) -> list[str]:
    """Lower-case search tokens of ``text``. Chinese runs: jieba's search mode for documents (all
    words and sub-words), its precise mode for queries (each must then be found in a document)."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        start = 0
        for run in _CJK_RUN.finditer(word):
            if run.start() > start:
                out.append(word[start : run.start()])
            cut = _jieba().lcut(run.group()) if for_query else _jieba().lcut_for_search(run.group())
            out.extend(t for t in cut if t.strip())
            start = run.end()
        if start < len(word):
            out.append(word[start:])
    return out


def query_terms(text: str) -> list[str]:
    """The distinct search terms of a query, without :data:`STOPWORDS` (unless that would leave
    nothing)."""
    terms = list(dict.fromkeys(tokens(text, for_query=True)))
    kept = [t for t in terms if t not in STOPWORDS]
    return kept or terms


_SENTENCE_END = re.compile(r"(?<=[.!?？！。])\s+|(?<=[？！。])")


def item_parts(title: str, body: str, *, sentences: int = 8) -> list[str]:
    """The pieces of an item a question is compared with one by one (the robot,
    :mod:`kefu.robot.decision`): its question or title, its answer or body (the first 1,000
    characters), and their sentences (the body's first ``sentences``) — so a bilingual item, or
    a long answer whose one sentence is the point, is not diluted in a single vector. Distinct,
    in that order, none shorter than two characters."""
    title, body = title.strip(), body[:1000].strip()
    pieces = [title, body]
    pieces += [p.strip() for p in _SENTENCE_END.split(title)]
    pieces += [p.strip() for p in _SENTENCE_END.split(body)][:sentences]
    return [p for p in dict.fromkeys(pieces) if len(p) > 1]


def has_cjk(value: str) -> bool:
    """Whether ``value`` contains a Chinese character."""
    return _CJK_RUN.search(value) is not None


def document(text: str) -> str:
    """``text`` as space-separated tokens, for ``to_tsvector('simple', …)``."""
    return " ".join(tokens(text))


def render_markdown(source: str) -> str:
    """Markdown → HTML with only :data:`ALLOWED_TAGS` kept; links get ``rel="noopener
    noreferrer"``, and only http(s)/mailto URLs survive."""
    html = md.markdown(source, extensions=["tables", "fenced_code", "sane_lists"])
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


#: closing tags of blocks (and line breaks): a space goes there, so words of two paragraphs,
#: list items or table cells do not run together once the tags are gone
_BLOCK_END = re.compile(r"</(?:p|h[1-6]|li|td|th|tr|pre|blockquote)>|<br\s*/?>|<hr\s*/?>", re.I)


def markdown_text(source: str) -> str:
    """The text a reader sees of Markdown ``source``, without markup (``## 退货 **7 天内**`` →
    ``退货 7 天内``): rendered by :func:`render_markdown`, then every tag dropped by nh3 (script
    and style with their content) and entities decoded. Plain text: escape it before putting it
    in HTML (templates do)."""
    rendered = _BLOCK_END.sub(lambda m: m.group(0) + " ", render_markdown(source))
    stripped = nh3.clean(rendered, tags=set(), attributes={})
    return re.sub(r"\s+", " ", html_lib.unescape(stripped)).strip()


def snippet(text: str, terms: list[str], width: int = 160) -> str:
    """A piece of ``text`` around the first of ``terms`` found in it (the start otherwise)."""
    plain = re.sub(r"\s+", " ", text).strip()
    low = plain.lower()
    hits = [low.find(t) for t in terms if t and low.find(t) >= 0]
    at = min(hits) if hits else 0
    start = max(0, at - width // 3)
    piece = plain[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(plain) else "")
