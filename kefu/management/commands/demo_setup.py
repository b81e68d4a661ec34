"""``manage.py demo_setup``: the public site plus a ready-to-use demo tenant. Idempotent."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django_tenants.utils import tenant_context

from im.models import Conversation
from im.services import groups
from kefu.models import AgentState, CannedResponse, Channel, Workgroup
from org import services as org_services
from org.models import Department
from tenants.models import Domain, Tenant
from tenants.services import public_tenant_ensure, tenant_create
from tenants.signals import demo_tenant_ready
from weiyu import devservices

DEMO_AGENTS = [("alice", "Alice 王"), ("bob", "Bob 李"), ("carol", "Carol 张")]
DEMO_USERNAMES = [username for username, _display in DEMO_AGENTS]

# Shared canned responses for the demo shop, typed as "/shortcut" in the inbox: each in Chinese
# and, with "-en", in English, so "/ship" offers both. (shortcut, category, title, text)
DEMO_CANNED = [
    ("hello", "中文", "问候", "您好！我是客服，很高兴为您服务，请问有什么可以帮您？"),
    ("order", "中文", "请提供订单号", "麻烦您提供一下订单号，我马上为您查询。"),
    ("ship", "中文", "发货时间", "付款后 24 小时内发货，节假日顺延；订单满 ¥99 包邮。"),
    ("refund", "中文", "退款", "在“我的订单”中选择订单，点击“申请退款”，款项三个工作日内退回。"),
    ("wait", "中文", "请稍等", "请稍等，我帮您查一下，马上回复您。"),
    ("bye", "中文", "结束语", "感谢您的咨询，祝您购物愉快！还有问题随时联系我们。"),
    ("hello-en", "English", "Greeting", "Hello! Thanks for getting in touch. How can I help you today?"),
    ("order-en", "English", "Ask for the order number", "Could you send me your order number? I'll look it up right away."),
    ("ship-en", "English", "Shipping time", "Orders ship within 24 hours of payment (later on public holidays), and delivery is free over ¥99."),
    ("refund-en", "English", "Refunds", "Open the order under My orders and click Request refund; the money is back within three working days."),
    ("wait-en", "English", "One moment", "One moment please, I'm checking that for you."),
    ("bye-en", "English", "Goodbye", "Thanks for chatting with us, and have a great day! Write any time if anything else comes up."),
]  # fmt: skip


class Command(BaseCommand):
    help = "Create the public site, a platform admin, and the demo tenant (admin, 3 agents, a workgroup, a human-only and a robot-first widget channel, shared canned responses)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--domain", default="demo.localhost", help="Host name of the demo tenant."
        )
        parser.add_argument(
            "--password",
            help=(
                "Password of every demo account (default: $WEIYU_DEMO_PASSWORD, else a random "
                "one kept in .data/demo_password, made on the first run)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password, reset = options["password"], True
        if not password:
            # a password that is new here is also given to accounts an older run created
            password, reset = devservices.demo_password()
            reset = reset or bool(os.environ.get("WEIYU_DEMO_PASSWORD"))
        domain = options["domain"]
        User = get_user_model()
        connection.set_schema_to_public()
        public_tenant_ensure(domains=["localhost", "127.0.0.1"])
        platform = User.objects.filter(username="platform").first()
        if platform is None:
            User.objects.create_superuser(username="platform", password=password, role="admin")
        elif reset:
            org_services.user_password_set(user=platform, password=password)

        existing = Domain.objects.filter(domain=domain).select_related("tenant").first()
        if existing is None:
            tenant = tenant_create(
                name="Demo 演示公司",
                schema_name="demo",
                domain=domain,
                admin_username="admin",
                admin_password=password,
            )
        else:
            tenant = existing.tenant
        with tenant_context(tenant):
            self._populate(tenant, password)
            if reset and existing is not None:
                for user in User.objects.filter(username__in=["admin", *DEMO_USERNAMES]):
                    org_services.user_password_set(user=user, password=password)
        self.stdout.write(self.style.SUCCESS(f"Demo tenant {tenant.name!r} ready at {domain}"))

    def _populate(self, tenant: Tenant, password: str) -> None:
        User = get_user_model()
        workgroup, _ = Workgroup.objects.get_or_create(name="售前咨询 Sales")
        for username, display in DEMO_AGENTS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(
                    username=username, password=password, display_name=display, role="agent"
                )
            workgroup.agents.add(user)
            # nobody is marked online here: an agent is available once they open the inbox
            AgentState.objects.get_or_create(user=user, defaults={"max_concurrent": 5})
        admin = User.objects.get(username="admin")
        AgentState.objects.get_or_create(user=admin)
        if not Channel.objects.exists():
            Channel.objects.create(
                name="Website",
                workgroup=workgroup,
                title="Demo 在线客服",
                welcome_text="你好！有什么可以帮您？ Hi! How can we help?",
            )
        if not Channel.objects.filter(mode=Channel.Mode.WORKGROUP).exists():
            Channel.objects.create(
                name="Assistant",
                mode=Channel.Mode.WORKGROUP,
                workgroup=workgroup,
                title="Demo 智能助理 Assistant",
                robot_name="小微 Weiwei",
            )
        for shortcut, category, title, content in DEMO_CANNED:
            CannedResponse.objects.get_or_create(
                owner=None,
                shortcut=shortcut,
                defaults={"category": category, "title": title, "content": content},
            )
        self._organisation(admin)
        demo_tenant_ready.send(
            sender=self.__class__,
            tenant=tenant,
            admin=admin,
            workgroup=workgroup,
            channel=Channel.objects.order_by("pk").first(),
        )

    def _organisation(self, admin: Any) -> None:
        """A small department tree with the demo people in it, and a team group chat."""
        User = get_user_model()
        if not Department.objects.exists():
            head_office = org_services.department_create(name="总部 Head office")
            service = org_services.department_create(
                name="客服部 Customer service", parent=head_office
            )
            org_services.department_create(name="研发部 Engineering", parent=head_office)
            org_services.department_member_add(department=head_office, user=admin, is_head=True)
            for username, _display in DEMO_AGENTS:
                org_services.department_member_add(
                    department=service,
                    user=User.objects.get(username=username),
                    is_head=username == "alice",
                )
        if not Conversation.objects.filter(kind=Conversation.Kind.GROUP).exists():
            agents = list(User.objects.filter(username__in=[u for u, _d in DEMO_AGENTS]))
            groups.group_create(
                creator=admin,
                title="客服团队 Support team",
                member_ids=[u.pk for u in agents],
                category="团队 Team",
                announcement="欢迎使用微语团队聊天！ Welcome to team chat!",
            )
