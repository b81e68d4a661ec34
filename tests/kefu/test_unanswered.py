"""Unanswered questions are merged the way an admin reads them (kbase.services.normalized_question)."""

from __future__ import annotations

from django.db import transaction
from django_tenants.utils import schema_context

from kbase import services as kbase_services
from kbase.models import RobotQuestion
from tests.conftest import unique


def test_the_same_question_asked_differently_is_collected_once(acme):
    # given visitors asking one question with different case, width, punctuation and spacing
    n = unique("")
    english = [f"Where is order {n}?", f"where is ORDER {n}", f"Ｗhere is order {n}！！"]
    chinese = [f"订单{n}退货怎么办？", f"订单{n}退货 怎么办", f"订单{n}退货怎么办!"]
    with schema_context("acme"):
        for question in english + chinese:
            with transaction.atomic():
                kbase_services.robot_question_collect(
                    question=question, reason="unanswered", conversation_id=None
                )
        # then the admins see each question once, counted three times, as first asked
        rows = RobotQuestion.objects.filter(question__contains=n, status="open").order_by("pk")
        assert [(r.question, r.count) for r in rows] == [(english[0], 3), (chinese[0], 3)]
