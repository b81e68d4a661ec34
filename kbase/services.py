"""Writing the knowledge base: FAQ items and articles, always with their search vector, and
articles with a version per saved text. Refusals raise :class:`weiyu.errors.ServiceError`."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from django.contrib.postgres.search import SearchVector
from django.db import models, transaction
from django.db.models import F, Value
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from kbase import indexing, text
from kbase.models import (
    Article,
    ArticleVersion,
    Category,
    FaqItem,
    KnowledgeBase,
    LlmProvider,
    RobotQuestion,
)
from weiyu.errors import ServiceError

QUESTION_MAX = 500
ANSWER_MAX = 20_000


def _vector(title: str, body: str) -> Any:
    """Title words weigh A, body words B (``ts_rank_cd`` favours a hit in the question)."""
    return SearchVector(Value(text.document(title)), config="simple", weight="A") + SearchVector(
        Value(text.document(body)), config="simple", weight="B"
    )


def _clean(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("invalid", _("%(field)s is required.") % {"field": field}, field=field)
    value = value.strip()
    if len(value) > limit:
        raise ServiceError(
            "invalid",
            _("%(field)s is longer than %(limit)d characters.") % {"field": field, "limit": limit},
            field=field,
        )
    return value


def category_get_or_create(*, kb: KnowledgeBase, name: object) -> Category | None:
    """The knowledge base's category of that name (created on first use); None for no name."""
    if not isinstance(name, str) or not name.strip():
        return None
    category, _created = Category.objects.get_or_create(kb=kb, name=name.strip()[:100])
    return category


def faq_upsert(
    *,
    kb: KnowledgeBase,
    question: object,
    answer: object,
    category: object = None,
    external_id: object = "",
    index_later: bool = True,
) -> tuple[FaqItem, str]:
    """Create or update one FAQ item: matched by ``external_id`` when given, else by the exact
    question. Returns ``(item, "created" | "updated" | "unchanged")``. ``ServiceError("invalid")``
    for an empty or too long question or answer. A new or changed item's semantic vector is
    computed by a worker afterwards (``index_later``; imports do it in batches instead)."""
    q = _clean(question, "question", QUESTION_MAX)
    a = _clean(answer, "answer", ANSWER_MAX)
    ext = str(external_id or "").strip()[:100]
    cat = category_get_or_create(kb=kb, name=category)
    with transaction.atomic():
        lookup = {"external_id": ext} if ext else {"question": q, "external_id": ""}
        item = FaqItem.objects.select_for_update().filter(kb=kb, **lookup).first()
        if item is None:
            item = FaqItem.objects.create(
                kb=kb, question=q, answer=a, category=cat, external_id=ext
            )
            outcome = "created"
        elif (item.question, item.answer, item.category_id) == (q, a, cat.pk if cat else None):
            return item, "unchanged"
        else:
            item.question, item.answer, item.category = q, a, cat
            item.save(update_fields=["question", "answer", "category", "updated_at"])
            outcome = "updated"
        FaqItem.objects.filter(pk=item.pk).update(search_vector=_vector(q, a))
        if index_later:
            indexing.embed_later("faq", [item.pk])
    return item, outcome


@transaction.atomic
def faq_save(*, item: FaqItem) -> FaqItem:
    """Save a FAQ item edited in the back office (fields validated by its form) and recompute
    its search vector; its semantic vector is computed by a worker after commit."""
    item.save()
    FaqItem.objects.filter(pk=item.pk).update(search_vector=_vector(item.question, item.answer))
    indexing.embed_later("faq", [item.pk])
    return item


@transaction.atomic
def robot_question_save(
    *, question: RobotQuestion, answer: object = None, kb: KnowledgeBase | None = None
) -> RobotQuestion:
    """Save a question the robot could not answer, as edited in the back office. With an
    ``answer`` (and the ``kb`` it goes to) the question becomes a FAQ item (:func:`faq_upsert`,
    same question text) and is marked *answered*, linked to that item. Errors: ``invalid`` for
    an answer without a knowledge base or an empty/too long question or answer."""
    if answer:
        if kb is None:
            raise ServiceError("invalid", _("Choose where the new FAQ item goes."), field="kb")
        item, _state = faq_upsert(kb=kb, question=question.question, answer=answer)
        question.faq_item = item
        question.status = RobotQuestion.Status.ANSWERED
    question.save()
    return question


def robot_questions_dismiss(*, question_ids: Iterable[int]) -> int:
    """Mark questions *dismissed* (the robot's unanswered list hides them). Returns how many."""
    return RobotQuestion.objects.filter(pk__in=list(question_ids)).update(
        status=RobotQuestion.Status.DISMISSED
    )


@transaction.atomic
def knowledge_base_save(
    *,
    kb: KnowledgeBase,
    categories: Iterable[Category] = (),
    deleted_categories: Iterable[Category] = (),
) -> KnowledgeBase:
    """Create or change a knowledge base with its categories in one transaction: drop
    ``deleted_categories`` (their articles and items keep no category), then save
    ``categories`` (each attached to this base)."""
    kb.save()
    Category.objects.filter(
        kb=kb, pk__in=[c.pk for c in deleted_categories if c.pk is not None]
    ).delete()
    for category in categories:
        category.kb = kb
        category.save()
    return kb


def llm_provider_save(*, provider: LlmProvider) -> LlmProvider:
    """Create or change an AI provider (fields validated by its form)."""
    provider.save()
    return provider


def _delete(model: type[models.Model], ids: Iterable[int]) -> int:
    qs = model.objects.filter(pk__in=list(ids))
    count = qs.count()
    qs.delete()
    return count


@transaction.atomic
def knowledge_bases_delete(*, kb_ids: Iterable[int]) -> int:
    """Delete knowledge bases with their categories, articles (and versions) and FAQ items.
    Returns how many bases."""
    return _delete(KnowledgeBase, kb_ids)


@transaction.atomic
def articles_delete(*, article_ids: Iterable[int]) -> int:
    """Delete articles with their versions. Returns how many articles."""
    return _delete(Article, article_ids)


@transaction.atomic
def faq_items_delete(*, item_ids: Iterable[int]) -> int:
    """Delete FAQ items; questions answered by one keep no FAQ item. Returns how many."""
    return _delete(FaqItem, item_ids)


@transaction.atomic
def robot_questions_delete(*, question_ids: Iterable[int]) -> int:
    """Delete unanswered-question rows. Returns how many."""
    return _delete(RobotQuestion, question_ids)


@transaction.atomic
def llm_providers_delete(*, provider_ids: Iterable[int]) -> int:
    """Delete AI providers. Returns how many."""
    return _delete(LlmProvider, provider_ids)


@transaction.atomic
def article_save(
    *,
    article: Article | None,
    kb: KnowledgeBase,
    title: object,
    body: object,
    status: object = Article.Status.DRAFT,
    category: Category | None = None,
    slug: object = None,
    user: Any = None,
) -> Article:
    """Create or change an article: renders its Markdown to sanitised HTML, keeps the text as a
    new :class:`ArticleVersion` when it changed, and refreshes the search vector. Publishing sets
    ``published_at`` the first time."""
    t = _clean(title, "title", 200)
    b = _clean(body, "body", 200_000)
    if status not in Article.Status.values:
        raise ServiceError("invalid", _("Unknown status."), field="status")
    wanted_slug = slugify(str(slug or t), allow_unicode=True)[:200] or "article"
    if article is None:
        article = Article(kb=kb)
    changed_text = (article.title, article.body) != (t, b) or article.status != status
    article.kb, article.title, article.body, article.status = kb, t, b, str(status)
    article.category = category
    article.slug = _unique_slug(kb, wanted_slug, article.pk)
    article.body_html = text.render_markdown(b)
    if status == Article.Status.PUBLISHED and article.published_at is None:
        article.published_at = timezone.now()
    article.save()
    if changed_text:
        number = (
            article.versions.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
        ArticleVersion.objects.create(
            article=article, number=number, title=t, body=b, status=status, saved_by=user
        )
    Article.objects.filter(pk=article.pk).update(search_vector=_vector(t, b))
    indexing.embed_later("article", [article.pk])
    return article


def _unique_slug(kb: KnowledgeBase, slug: str, pk: int | None) -> str:
    candidate, n = slug, 2
    while Article.objects.filter(kb=kb, slug=candidate).exclude(pk=pk).exists():
        candidate, n = f"{slug[:190]}-{n}", n + 1
    return candidate


# --- questions the service robot could not answer (kefu.robot) ---------------------------------


def normalized_question(question: str) -> str:
    """The form unanswered questions are merged by: Unicode NFKC (full-width letters and
    punctuation become their ASCII forms), case folded, punctuation and symbols dropped, runs of
    spaces made one — so "退货怎么办?", "退货 怎么办" and "退货怎么办!" count as one question."""
    text = unicodedata.normalize("NFKC", question).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    words = kept.split()
    # spaces between two CJK characters are not words apart: "退货 怎么办" = "退货怎么办"
    out = ""
    for word in words:
        if out and not (_cjk(out[-1]) and _cjk(word[0])):
            out += " "
        out += word
    return out[:500]


def _cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uac00" <= ch <= "\ud7af"


def robot_question_collect(
    *, question: str, reason: str, conversation_id: int | None, answer_title: str = ""
) -> RobotQuestion:
    """Count a question the robot could not answer well: the open entry with the same
    normalized text gets its count raised, else a new one is made."""
    normalized = normalized_question(question)
    existing = (
        RobotQuestion.objects.select_for_update()
        .filter(normalized=normalized, status=RobotQuestion.Status.OPEN)
        .first()
    )
    now = timezone.now()
    if existing is not None:
        RobotQuestion.objects.filter(pk=existing.pk).update(
            count=F("count") + 1,
            last_asked_at=now,
            conversation_id=conversation_id,
            reason=reason if reason == RobotQuestion.Reason.NOT_HELPFUL else existing.reason,
        )
        existing.refresh_from_db()
        return existing
    return RobotQuestion.objects.create(
        question=question[:500],
        normalized=normalized,
        reason=reason,
        conversation_id=conversation_id,
        answer_title=answer_title[:500],
    )
