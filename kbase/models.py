"""Knowledge bases (MISSION.md KB-1 … KB-5): help-center articles and FAQ pairs, searchable in
Chinese and English.

A :class:`KnowledgeBase` holds :class:`Category` rows, :class:`Article` rows (Markdown, rendered
to sanitised HTML, every saved text kept as an :class:`ArticleVersion`, draft or published) and
:class:`FaqItem` rows (question/answer pairs, typically imported with ``manage.py
kbase_import``). Each article and FAQ item carries a ``search_vector``: its text segmented by
:mod:`kbase.text` (jieba for Chinese, words elsewhere) in PostgreSQL's ``simple`` configuration,
so search needs no extension. ``embedding`` holds the item's sentence vector for semantic search
when :mod:`kbase.embeddings` is installed (null otherwise).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from weiyu.fields import EncryptedTextField


class KnowledgeBase(models.Model):
    """A collection of articles and FAQ items. ``is_public``: readable without signing in (the
    help center ``/help/`` and the widget's robot); otherwise staff only."""

    class Kind(models.TextChoices):
        HELP_CENTER = "help_center", _("Help center")
        INTERNAL = "internal", _("Internal notes")
        FAQ = "faq", _("FAQ")
        QUICK_REPLIES = "quick_replies", _("Quick replies")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.FAQ)
    description = models.CharField(_("description"), max_length=500, blank=True)
    is_public = models.BooleanField(
        _("public"),
        default=False,
        help_text=_("Readable by visitors: the help center and the widget's robot."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("knowledge base")
        verbose_name_plural = _("knowledge bases")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    kb = models.ForeignKey(
        KnowledgeBase,
        on_delete=models.CASCADE,
        related_name="categories",
        verbose_name=_("knowledge base"),
    )
    name = models.CharField(_("name"), max_length=100)
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["kb", "position", "name"]
        constraints = [models.UniqueConstraint(fields=["kb", "name"], name="kbase_category_unique")]

    def __str__(self) -> str:
        return self.name


class Article(models.Model):
    """A help-center article. ``body`` is Markdown; ``body_html`` its sanitised rendering
    (:func:`kbase.text.render_markdown`). Only ``published`` articles reach visitors."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    kb = models.ForeignKey(
        KnowledgeBase,
        on_delete=models.CASCADE,
        related_name="articles",
        verbose_name=_("knowledge base"),
    )
    category = models.ForeignKey(
        Category,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="articles",
        verbose_name=_("category"),
    )
    title = models.CharField(_("title"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=200, allow_unicode=True)
    body = models.TextField(_("text (Markdown)"))
    body_html = models.TextField(_("text (HTML)"), editable=False, default="")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    external_id = models.CharField(_("external id"), max_length=100, blank=True)
    search_vector = SearchVectorField(null=True, editable=False)
    embedding = ArrayField(models.FloatField(), null=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)

    class Meta:
        verbose_name = _("article")
        verbose_name_plural = _("articles")
        ordering = ["kb", "title"]
        constraints = [models.UniqueConstraint(fields=["kb", "slug"], name="kbase_article_slug")]
        indexes = [GinIndex(fields=["search_vector"], name="kbase_article_search")]

    def __str__(self) -> str:
        return self.title


class ArticleVersion(models.Model):
    """The text of an article as it was saved, newest last (``number`` 1, 2, …)."""

    article = models.ForeignKey(
        Article, on_delete=models.CASCADE, related_name="versions", verbose_name=_("article")
    )
    number = models.PositiveIntegerField(_("version"))
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("text (Markdown)"))
    status = models.CharField(_("status"), max_length=16, choices=Article.Status.choices)
    saved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("saved by"),
    )
    saved_at = models.DateTimeField(_("saved at"), auto_now_add=True)

    class Meta:
        verbose_name = _("article version")
        verbose_name_plural = _("article versions")
        ordering = ["article", "number"]
        constraints = [
            models.UniqueConstraint(fields=["article", "number"], name="kbase_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.article} v{self.number}"


class FaqItem(models.Model):
    """A question and its answer. ``external_id``: the id in the file it was imported from, so a
    re-import updates instead of duplicating (unique per knowledge base when set)."""

    kb = models.ForeignKey(
        KnowledgeBase,
        on_delete=models.CASCADE,
        related_name="faq_items",
        verbose_name=_("knowledge base"),
    )
    category = models.ForeignKey(
        Category,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="faq_items",
        verbose_name=_("category"),
    )
    question = models.CharField(_("question"), max_length=500)
    answer = models.TextField(_("answer"))
    external_id = models.CharField(_("external id"), max_length=100, blank=True)
    is_published = models.BooleanField(_("published"), default=True)
    search_vector = SearchVectorField(null=True, editable=False)
    embedding = ArrayField(models.FloatField(), null=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("FAQ item")
        verbose_name_plural = _("FAQ items")
        ordering = ["kb", "question"]
        constraints = [
            models.UniqueConstraint(
                fields=["kb", "external_id"],
                condition=~Q(external_id=""),
                name="kbase_faq_external_id",
            )
        ]
        indexes = [GinIndex(fields=["search_vector"], name="kbase_faq_search")]

    def __str__(self) -> str:
        return self.question


class RobotQuestion(models.Model):
    """A visitor question the robot could not answer, or whose answer was marked not helpful
    (KB-4): collected for admins, who answer it as a new FAQ item. The same question is
    counted, not stored twice, while it is open; questions are compared in the form
    :func:`kbase.services.normalized_question` gives them (width, case, punctuation and spacing
    ignored)."""

    class Reason(models.TextChoices):
        UNANSWERED = "unanswered", _("Not answered")
        NOT_HELPFUL = "not_helpful", _("Marked not helpful")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ANSWERED = "answered", _("Answered with a FAQ item")
        DISMISSED = "dismissed", _("Dismissed")

    question = models.CharField(_("question"), max_length=500)
    normalized = models.CharField(max_length=500, editable=False, db_index=True)
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    count = models.PositiveIntegerField(_("times asked"), default=1)
    conversation_id = models.BigIntegerField(
        _("last conversation"), null=True, blank=True, editable=False
    )
    answer_title = models.CharField(
        _("answer given"), max_length=500, blank=True, help_text=_("The source the robot used.")
    )
    faq_item = models.ForeignKey(
        FaqItem,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("FAQ item"),
    )
    first_asked_at = models.DateTimeField(_("first asked"), auto_now_add=True)
    last_asked_at = models.DateTimeField(_("last asked"), auto_now_add=True)

    class Meta:
        verbose_name = _("unanswered question")
        verbose_name_plural = _("unanswered questions")
        ordering = ["-last_asked_at"]

    def __str__(self) -> str:
        return self.question


class LlmProvider(models.Model):
    """An OpenAI-compatible chat-completions endpoint (KB-5). Active providers are tried in
    ``priority`` order, each with its own ``timeout_s``; the first that answers wins. The
    presets fill the base URL and a model for Ollama, DeepSeek, ZhipuAI, Qwen (DashScope),
    Moonshot and OpenAI (:data:`kbase.llm.PRESETS`)."""

    class Preset(models.TextChoices):
        OLLAMA = "ollama", "Ollama"
        DEEPSEEK = "deepseek", "DeepSeek"
        ZHIPU = "zhipu", "ZhipuAI (GLM)"
        QWEN = "qwen", "Qwen (DashScope)"
        MOONSHOT = "moonshot", "Moonshot (Kimi)"
        OPENAI = "openai", "OpenAI"
        CUSTOM = "custom", _("Other OpenAI-compatible")

    name = models.CharField(_("name"), max_length=100)
    preset = models.CharField(
        _("vendor"), max_length=16, choices=Preset.choices, default=Preset.CUSTOM
    )
    base_url = models.URLField(
        _("base URL"),
        max_length=300,
        blank=True,
        help_text=_(
            "Empty: the vendor's usual address, e.g. http://localhost:11434/v1 for Ollama."
        ),
    )
    model = models.CharField(
        _("model"), max_length=100, blank=True, help_text=_("Empty: the vendor's usual model.")
    )
    api_key = EncryptedTextField(
        _("API key"), blank=True, help_text=_("Kept encrypted (WEIYU_FIELD_KEYS).")
    )
    timeout_s = models.PositiveSmallIntegerField(
        _("timeout (seconds)"), default=30, help_text=_("For the whole answer.")
    )
    temperature = models.FloatField(_("temperature"), default=0.2)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=10, help_text=_("Lower numbers are tried first.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("LLM provider")
        verbose_name_plural = _("LLM providers")
        ordering = ["priority", "pk"]

    def __str__(self) -> str:
        return self.name
