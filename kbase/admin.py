"""Back office for knowledge bases: bases, categories, articles (Markdown, versions, draft or
published) and FAQ items. Saves, deletions and actions go through :mod:`kbase.services`, so HTML,
versions and the search index stay in step."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from kbase import services
from kbase.llm import endpoint
from kbase.models import (
    Article,
    ArticleVersion,
    Category,
    FaqItem,
    KnowledgeBase,
    LlmProvider,
    RobotQuestion,
)


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "is_public", "article_count", "faq_count")
    list_filter = ("kind", "is_public")
    inlines = [CategoryInline]

    def save_model(self, request: HttpRequest, obj: KnowledgeBase, form: Any, change: bool) -> None:
        """Saved with its categories in one service call (:meth:`save_related`)."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        categories: list[Category] = []
        deleted: list[Category] = []
        for formset in formsets:
            categories += formset.save(commit=False)
            deleted += formset.deleted_objects
        services.knowledge_base_save(
            kb=form.instance, categories=categories, deleted_categories=deleted
        )

    def delete_model(self, request: HttpRequest, obj: KnowledgeBase) -> None:
        services.knowledge_bases_delete(kb_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[KnowledgeBase]) -> None:
        services.knowledge_bases_delete(kb_ids=queryset.values_list("pk", flat=True))

    @admin.display(description=_("articles"))
    def article_count(self, obj: KnowledgeBase) -> int:
        return obj.articles.count()

    @admin.display(description=_("FAQ items"))
    def faq_count(self, obj: KnowledgeBase) -> int:
        return obj.faq_items.count()


class ArticleVersionInline(admin.TabularInline):
    model = ArticleVersion
    extra = 0
    fields = ("number", "title", "status", "saved_by", "saved_at")
    readonly_fields = fields
    can_delete = False
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ("title", "kb", "category", "status", "updated_at", "help_link")
    list_filter = ("kb", "status", "category")
    search_fields = ("title", "body")
    fields = ("kb", "category", "title", "slug", "status", "body", "preview")
    readonly_fields = ("preview",)
    inlines = [ArticleVersionInline]

    @admin.display(description=_("preview"))
    def preview(self, obj: Article) -> str:
        if not obj.pk:
            return "—"
        # body_html is already sanitised by kbase.text.render_markdown
        return format_html("<div style='max-width:760px'>{}</div>", mark_safe(obj.body_html))  # noqa: S308

    @admin.display(description=_("help center"))
    def help_link(self, obj: Article) -> str:
        if obj.kb.is_public and obj.status == Article.Status.PUBLISHED:
            return format_html('<a href="/help/{}/{}">/help/…</a>', obj.kb_id, obj.slug)
        return "—"

    def save_model(self, request: HttpRequest, obj: Article, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = services.article_save(
            article=obj if change else None,
            kb=data["kb"],
            title=data["title"],
            body=data["body"],
            status=data["status"],
            category=data.get("category"),
            slug=data.get("slug") or None,
            user=request.user,
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Article) -> None:
        services.articles_delete(article_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        services.articles_delete(article_ids=queryset.values_list("pk", flat=True))


@admin.register(FaqItem)
class FaqItemAdmin(admin.ModelAdmin):
    list_display = ("question", "kb", "category", "external_id", "is_published", "updated_at")
    list_filter = ("kb", "category", "is_published")
    search_fields = ("question", "answer", "external_id")

    def save_model(self, request: HttpRequest, obj: FaqItem, form: Any, change: bool) -> None:
        services.faq_save(item=obj)

    def delete_model(self, request: HttpRequest, obj: FaqItem) -> None:
        services.faq_items_delete(item_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FaqItem]) -> None:
        services.faq_items_delete(item_ids=queryset.values_list("pk", flat=True))


class RobotQuestionForm(forms.ModelForm):
    """Answering an unanswered question: the answer and the knowledge base it goes to become a
    new FAQ item (the question text may be tidied first)."""

    answer = forms.CharField(
        label=_("answer"),
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        help_text=_("Saving with an answer adds a FAQ item and marks the question answered."),
    )
    target_kb = forms.ModelChoiceField(
        label=_("add to knowledge base"), queryset=KnowledgeBase.objects.all(), required=False
    )

    class Meta:
        model = RobotQuestion
        fields = ("question", "status")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("answer") and not data.get("target_kb"):
            self.add_error("target_kb", _("Choose where the new FAQ item goes."))
        return data


@admin.register(RobotQuestion)
class RobotQuestionAdmin(admin.ModelAdmin):
    """Questions the robot could not answer or whose answer was rated not helpful (KB-4),
    most recent first; answer one to turn it into a FAQ item."""

    form = RobotQuestionForm
    list_display = ("question", "reason", "count", "last_asked_at", "status", "faq_item")
    list_filter = ("status", "reason")
    search_fields = ("question",)
    readonly_fields = (
        "reason",
        "count",
        "answer_title",
        "first_asked_at",
        "last_asked_at",
        "faq_item",
    )
    actions = ["dismiss"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RobotQuestion, form: Any, change: bool) -> None:
        services.robot_question_save(
            question=obj,
            answer=form.cleaned_data.get("answer"),
            kb=form.cleaned_data.get("target_kb"),
        )

    def delete_model(self, request: HttpRequest, obj: RobotQuestion) -> None:
        services.robot_questions_delete(question_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RobotQuestion]) -> None:
        services.robot_questions_delete(question_ids=queryset.values_list("pk", flat=True))

    @admin.action(description=_("Dismiss the selected questions"))
    def dismiss(self, request: HttpRequest, queryset: Any) -> None:
        services.robot_questions_dismiss(question_ids=queryset.values_list("pk", flat=True))


def _https_urls(db_field: Any, **kwargs: Any) -> Any:
    """Form fields of the model, URLs taking ``https://`` when the scheme is left out."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class LlmProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        label=_("base URL"),
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text=LlmProvider._meta.get_field("base_url").help_text,
    )

    class Meta:
        model = LlmProvider
        fields = (
            "name",
            "preset",
            "base_url",
            "model",
            "api_key",
            "timeout_s",
            "temperature",
            "priority",
            "is_active",
        )
        # the key is never written back into the page; left empty, the stored key is kept
        widgets = {"api_key": forms.PasswordInput(render_value=False)}
        formfield_callback = _https_urls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.api_key:
            self.fields["api_key"].help_text = _(
                "A key is stored (encrypted). Leave empty to keep it; type a new one to replace it."
            )

    def clean_api_key(self) -> str:
        """An empty field keeps the stored key (the page never shows it)."""
        typed = self.cleaned_data.get("api_key") or ""
        if not typed and self.instance.pk:
            return self.instance.api_key
        return typed

    def clean_base_url(self) -> str:
        """Refuse an address the worker may not call (weiyu.outbound: public http(s) hosts,
        or the platform's WEIYU_OUTBOUND_ALLOW), with the reason."""
        from weiyu import outbound  # the HTTP client library, loaded when a form is checked

        url = self.cleaned_data.get("base_url") or ""
        if url:
            try:
                outbound.check_url(url)
            except outbound.OutboundRefusedError as exc:
                raise forms.ValidationError(str(exc), code="refused") from exc
        return url


@admin.register(LlmProvider)
class LlmProviderAdmin(admin.ModelAdmin):
    """AI providers for the robot's written answers and agents' drafts (KB-5), tried in
    priority order."""

    form = LlmProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "preset", "endpoint_display", "priority", "timeout_s", "is_active")
    list_editable = ("priority", "is_active")
    list_filter = ("preset", "is_active")

    def save_model(self, request: HttpRequest, obj: LlmProvider, form: Any, change: bool) -> None:
        services.llm_provider_save(provider=obj)

    def delete_model(self, request: HttpRequest, obj: LlmProvider) -> None:
        services.llm_providers_delete(provider_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LlmProvider]) -> None:
        services.llm_providers_delete(provider_ids=queryset.values_list("pk", flat=True))

    @admin.display(description=_("endpoint"))
    def endpoint_display(self, obj: LlmProvider) -> str:
        base_url, model = endpoint(obj)
        return f"{base_url} · {model}"
