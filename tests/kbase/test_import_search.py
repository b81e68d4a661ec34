"""The knowledge base: ``kbase_import`` on the real zaragoza-construction-faq files (JSON with
q/a keys, JSONL, CSV, Swedish and English), bad rows with their line numbers, re-imports that
update instead of duplicating, export round trips, search in Chinese and English through the
service and the API, and the public help center."""

from __future__ import annotations

import json
from importlib import resources
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_tenants.utils import schema_context

from kbase import search, services
from kbase.models import Article, FaqItem, KnowledgeBase
from tenants.models import Tenant
from tests.conftest import session_cookie, unique

DATA = resources.files("zaragoza_construction_faq") / "data"


@pytest.fixture(autouse=True)
def _keywords_only(monkeypatch):
    """These tests are about import and keyword search; test_semantic.py covers embeddings."""
    monkeypatch.setenv("WEIYU_SEMANTIC", "off")


def _import(path, kb: str, *extra: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(
        "kbase_import", str(path), "--tenant", "acme", "--kb", kb, "--no-progress", *extra,
        stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue(), err.getvalue()


def _items(kb_name: str):
    with schema_context("acme"):
        return list(FaqItem.objects.filter(kb__name=kb_name).order_by("external_id"))


def test_the_zaragoza_faq_imports_in_every_format_and_reimports_without_duplicates(tmp_path):
    kb = unique("Zaragoza")
    master = json.loads((DATA / "faq-en.json").read_text(encoding="utf-8"))["questions"]
    out, err = _import(DATA / "faq-en.json", kb, "--create", "--public")
    assert f"{len(master)} created" in out
    assert err == ""
    items = _items(kb)
    assert len(items) == len(master) == 503
    first = next(i for i in items if i.external_id == master[0]["id"])
    assert first.question == master[0]["q"]
    assert first.answer == master[0]["a"]
    with schema_context("acme"):
        assert first.category.name == master[0]["category"]
    # the same data as JSONL and CSV changes nothing
    out, _err = _import(DATA / "faq-en.jsonl", kb)
    assert f"0 created, 0 updated, {len(master)} unchanged, 0 failed" in out
    out, _err = _import(DATA / "faq-en.csv", kb)
    assert f"0 created, 0 updated, {len(master)} unchanged, 0 failed" in out
    assert len(_items(kb)) == 503
    # the Swedish file has the same ids: every item is updated in place, none added
    out, _err = _import(DATA / "faq.json", kb)
    assert "0 created, 503 updated" in out
    swedish = {i.external_id: i for i in _items(kb)}
    assert swedish[master[0]["id"]].question == "Vad är bygglov?"


def test_bad_rows_are_reported_with_their_line_and_the_rest_imported(tmp_path):
    kb = unique("Mixed")
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"id": "r1", "question": "How do I reset my password?", "answer": "Use the link."}\n'
        '{"id": "r2", "question": "", "answer": "no question"}\n'
        "this is not json\n"
        '{"id": "r4", "q": "如何申请退款？", "a": "在订单页面点击“申请退款”。", "category": "售后"}\n',
        encoding="utf-8",
    )
    out, err = _import(path, kb, "--create")
    assert "2 created, 0 updated, 0 unchanged, 2 failed" in out
    assert "faq.jsonl, line 2:" in err
    assert "faq.jsonl, line 3: not JSON" in err
    assert [i.external_id for i in _items(kb)] == ["r1", "r4"]
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text(
        "question,answer,category\nWhat is SLA?,Service level agreement,Terms\n,missing,Terms\n",
        encoding="utf-8",
    )
    out, err = _import(csv_path, kb)
    assert "1 created" in out
    assert "faq.csv, line 3:" in err


def test_clear_errors_for_a_bad_command(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        _import(tmp_path / "missing.json", "x")
    good = tmp_path / "faq.json"
    good.write_text('[{"q": "a", "a": "b"}]', encoding="utf-8")
    with pytest.raises(CommandError, match="No knowledge base"):
        _import(good, unique("absent"))
    with pytest.raises(CommandError, match="No such tenant"):
        call_command("kbase_import", str(good), "--tenant", "nope", "--kb", "x", "--no-progress")
    bad = tmp_path / "faq.csv"
    bad.write_text("title,body\nx,y\n", encoding="utf-8")
    with pytest.raises(CommandError, match="question"):
        _import(bad, "x", "--create")


def test_export_reads_back_the_same(tmp_path):
    kb = unique("Roundtrip")
    _import(DATA / "faq-en.jsonl", kb, "--create")
    for fmt in ("csv", "json", "jsonl"):
        path = tmp_path / f"out.{fmt}"
        call_command("kbase_export", str(path), "--tenant", "acme", "--kb", kb, stdout=StringIO())
        copy = unique("Copy")
        out, _err = _import(path, copy, "--create")
        assert "503 created" in out
        a = [(i.external_id, i.question, i.answer) for i in _items(kb)]
        b = [(i.external_id, i.question, i.answer) for i in _items(copy)]
        assert a == b


@pytest.fixture
def shop_kb():
    """A public Chinese/English FAQ and a private internal one."""
    with schema_context("acme"):
        public = KnowledgeBase.objects.create(name=unique("Shop FAQ"), is_public=True)
        internal = KnowledgeBase.objects.create(name=unique("Internal"), is_public=False)
        rows = [
            (
                "refund",
                "如何申请退款？",
                "在“我的订单”页面选择订单，点击“申请退款”，三个工作日内到账。",
            ),
            ("ship", "多久可以发货？", "付款后 24 小时内发货，节假日顺延。"),
            ("invoice", "How do I get an invoice?", "Open the order and click Download invoice."),
            ("pwd", "I forgot my password", "Use the reset link on the sign-in page."),
        ]
        for ext, q, a in rows:
            services.faq_upsert(kb=public, question=q, answer=a, external_id=ext, category="售后")
        services.faq_upsert(
            kb=internal,
            question="退款审批流程",
            answer="超过 500 元的退款需要主管审批。",
            external_id="secret",
        )
        services.article_save(
            article=None,
            kb=public,
            title="退款政策 Refund policy",
            body="## 退款\n\n收到商品 **7 天内** 可以申请退款。<script>alert(1)</script>",
            status=Article.Status.PUBLISHED,
        )
    return public, internal


def test_search_finds_chinese_and_english(shop_kb):
    public, internal = shop_kb
    with schema_context("acme"):
        hits = search.search(q="怎么退款", kb_ids=[public.pk, internal.pk])
        # 退款 matches, 怎么 does not: the any-term fallback finds both refund texts first
        assert {h["external_id"] for h in hits[:2]} == {"refund", ""}
        assert "退款" in hits[0]["title"]
        hits = search.search(q="申请退款", kb_ids=[public.pk])
        assert hits[0]["type"] == "faq"
        assert hits[0]["title"] == "如何申请退款？"
        assert "申请退款" in hits[0]["snippet"]
        assert "article" in [h["type"] for h in hits]
        hits = search.search(q="invoice download", kb_ids=[public.pk])
        assert hits[0]["external_id"] == "invoice"
        assert search.search(q="password", kb_ids=[public.pk])[0]["external_id"] == "pwd"
        assert search.search(q="发货", kb_ids=[public.pk])[0]["external_id"] == "ship"
        # visitors never see the internal knowledge base
        assert "secret" not in [
            h["external_id"] for h in search.search(q="退款审批", public_only=True)
        ]
        assert search.search(q="退款审批", kb_ids=[internal.pk])[0]["external_id"] == "secret"


def test_search_api_for_visitors_and_staff(shop_kb):
    _public, internal = shop_kb
    anonymous = Client(HTTP_HOST="acme.localhost")
    r = anonymous.get("/api/v1/kbase/search", {"q": "退款", "limit": 5})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results
    assert all(h["kb"]["id"] != internal.pk for h in results)
    first = results[0]
    assert set(first) == {
        "type", "id", "external_id", "title", "snippet", "text", "score", "similarity",
        "keyword", "kb", "url",
    }  # fmt: skip
    with schema_context("acme"):
        from org.models import User

        bob = User.objects.get(username="bob")
    staff = Client(HTTP_HOST="acme.localhost")
    name, value = session_cookie(Tenant.objects.get(schema_name="acme"), bob).decode().split("=", 1)
    staff.cookies[name] = value
    r = staff.get("/api/v1/kbase/search", {"q": "退款审批", "kb": str(internal.pk)})
    assert r.json()["results"][0]["external_id"] == "secret"
    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": "0"}, {"q": "a", "kb": "x"}):
        bad = anonymous.get("/api/v1/kbase/search", params)
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid"


def test_help_center_lists_searches_and_shows_safe_articles(shop_kb):
    public, _internal = shop_kb
    web = Client(HTTP_HOST="acme.localhost", HTTP_ACCEPT_LANGUAGE="en")
    index = web.get("/help/").content.decode()
    assert "退款政策 Refund policy" in index
    found = web.get("/help/", {"q": "退款"}).content.decode()
    assert "如何申请退款？" in found
    # the article's snippet is its text, not its Markdown, and never its script
    assert "退款 收到商品 7 天内 可以申请退款。" in found
    assert "##" not in found
    assert "**" not in found
    assert "alert(1)" not in found
    with schema_context("acme"):
        article = Article.objects.get(kb=public)
    page = web.get(f"/help/{public.pk}/{article.slug}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>7 天内</strong>" in html
    assert "<script>alert(1)</script>" not in html
    with schema_context("acme"):
        services.article_save(
            article=article, kb=public, title=article.title, body="draft again", status="draft"
        )
        assert list(article.versions.values_list("number", flat=True)) == [1, 2]
    assert web.get(f"/help/{public.pk}/{article.slug}").status_code == 404


def test_snippets_are_the_text_a_reader_sees():
    from kbase.text import markdown_text

    assert markdown_text("## 退款\n\n收到商品 **7 天内** 可以申请退款。") == (
        "退款 收到商品 7 天内 可以申请退款。"
    )
    assert markdown_text("- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |") == "one two a b 1 2"
    # links keep their words, code its text; scripts and event handlers vanish
    assert markdown_text("[our shop](https://x.example) `pip install`") == ("our shop pip install")
    assert markdown_text('<img src=x onerror="alert(1)"><script>alert(2)</script>ok') == "ok"
    # an escaped tag in the source is text, left for the template to escape
    assert markdown_text("1 &lt; 2 and &lt;b&gt;") == "1 < 2 and <b>"
