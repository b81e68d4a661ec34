"""Back office for knowledge bases: bases, categories, articles (Markdown, versions, draft or
published) and FAQ items. Saves go through :mod:`kbase.services`, so HTML, versions and the
search index stay in step."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from kbase import services
from kbase.models import Article, ArticleVersion, Category, FaqItem, KnowledgeBase


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "is_public", "article_count", "faq_count")
    list_filter = ("kind", "is_public")
    inlines = [CategoryInline]

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


@admin.register(FaqItem)
class FaqItemAdmin(admin.ModelAdmin):
    list_display = ("question", "kb", "category", "external_id", "is_published", "updated_at")
    list_filter = ("kb", "category", "is_published")
    search_fields = ("question", "answer", "external_id")

    def save_model(self, request: HttpRequest, obj: FaqItem, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.faq_reindex(obj)
