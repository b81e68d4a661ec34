"""Demo data for the knowledge base (``manage.py demo_setup``): a public FAQ and a help-center
article in Chinese and English, so ``/help/`` and the search API have something to find."""

from __future__ import annotations

from typing import Any

from kbase import indexing, services
from kbase.models import Article, FaqItem, KnowledgeBase

FAQ = [
    ("refund", "售后 After-sales", "如何申请退款？ How do I get a refund?",
     "在“我的订单”中选择订单，点击“申请退款”，款项三个工作日内退回。\n"
     "Open the order under My orders and click Request refund; the money is back within three working days."),
    ("shipping", "物流 Shipping", "多久发货？ When will my order ship?",
     "付款后 24 小时内发货，节假日顺延。 Orders ship within 24 hours of payment, later on public holidays."),
    ("invoice", "订单 Orders", "怎么开发票？ How do I get an invoice?",
     "订单完成后在订单详情页下载电子发票。 Download the e-invoice from the order page once the order is complete."),
    ("password", "账户 Account", "忘记密码怎么办？ I forgot my password",
     "在登录页点击“忘记密码”，按短信验证码重设。 Click Forgot password on the sign-in page and follow the SMS code."),
]  # fmt: skip

ARTICLE = """## 退款政策

收到商品 **7 天内**，未使用的商品可以无理由退货退款。

## Refund policy

Unused goods can be returned within **7 days** of delivery, no questions asked.
"""


def populate(**_: Any) -> None:
    """Idempotent: once the demo knowledge base exists, only computes the vectors its items lack
    (semantic search installed after the first run; ``manage.py demo_setup`` loads the model for
    that), so the robot understands paraphrases from then on."""
    existing = KnowledgeBase.objects.filter(name="帮助中心 Help center").first()
    if existing is not None:
        for kind, model in (("faq", FaqItem), ("article", Article)):
            missing = model.objects.filter(kb=existing, embedding__isnull=True)
            indexing.embed(kind, list(missing.values_list("pk", flat=True)))
        return
    kb = KnowledgeBase.objects.create(
        name="帮助中心 Help center", kind=KnowledgeBase.Kind.HELP_CENTER, is_public=True
    )
    for external_id, category, question, answer in FAQ:
        services.faq_upsert(
            kb=kb, question=question, answer=answer, category=category, external_id=external_id
        )
    services.article_save(
        article=None,
        kb=kb,
        title="退款政策 Refund policy",
        body=ARTICLE,
        status=Article.Status.PUBLISHED,
        category=services.category_get_or_create(kb=kb, name="售后 After-sales"),
        slug="refund-policy",
    )
