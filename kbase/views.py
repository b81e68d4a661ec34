"""The public help center (``/help/``): published articles of public knowledge bases, by
category, with search."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from kbase import search
from kbase.models import Article, KnowledgeBase
from org import limits
from weiyu import ratelimit
from weiyu.errors import RateLimitedError


def help_index(request: HttpRequest) -> HttpResponse:
    """``GET /help/`` (``?q=`` searches): every public knowledge base with its published
    articles by category. Searches per address and minute are limited
    (``org.limits.help_search``): past the limit the page says so, with status 429 and
    ``Retry-After``, and lists the articles without searching."""
    q = (request.GET.get("q") or "").strip()[:200]
    refused: RateLimitedError | None = None
    if q:
        try:
            ratelimit.check(
                limits.help_search(limits.effective(), ip=request.META.get("REMOTE_ADDR", ""))
            )
        except RateLimitedError as exc:
            refused = exc
    results = search.search(q=q, public_only=True, limit=20) if q and not refused else []
    kbs = []
    for kb in KnowledgeBase.objects.filter(is_public=True):
        articles = kb.articles.filter(status=Article.Status.PUBLISHED).select_related("category")
        groups: dict[str, list[Article]] = {}
        for article in articles.order_by("category__position", "category__name", "title"):
            groups.setdefault(article.category.name if article.category else "", []).append(article)
        if groups:
            kbs.append({"kb": kb, "groups": sorted(groups.items())})
    context = {"kbs": kbs, "q": q, "results": results, "refused": refused}
    if refused is None:
        return render(request, "kbase/help_index.html", context)
    response = render(request, "kbase/help_index.html", context, status=429)
    response["Retry-After"] = str(refused.retry_after_s)
    return response


def help_article(request: HttpRequest, kb_id: int, slug: str) -> HttpResponse:
    """``GET /help/<kb id>/<slug>``: one published article of a public knowledge base (404
    otherwise)."""
    article = (
        Article.objects.filter(
            kb_id=kb_id, slug=slug, kb__is_public=True, status=Article.Status.PUBLISHED
        )
        .select_related("kb", "category")
        .first()
    )
    if article is None:
        raise Http404
    return render(request, "kbase/help_article.html", {"article": article})
