"""Shared set-up of the messaging-channel tests: the fake vendors, a Celery worker allowed to
reach them, and channels of each kind on a desk (kefu.channels)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from django_tenants.utils import schema_context

from kefu.models import Channel, ChannelAccount, Session, Visitor
from tests import fake_vendors
from tests.conftest import Desk, unique
from weiyu.celery import app

BOT_TOKEN = "123456:test-bot-token"
HOOK_SECRET = "hook-secret-1"
WX_TOKEN = "wxtoken"
WX_APPID = "wx1234567890abcdef"
WX_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters


@pytest.fixture(scope="module")
def vendors() -> Iterator[fake_vendors.FakeVendors]:
    fake = fake_vendors.FakeVendors().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def channel_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[object]:
    """A Celery worker on a queue of its own that may reach the fake vendors; failed sends are
    tried again after 0.2 s, 0.4 s, and given up after 3 attempts."""
    from tests.servers import celery_worker_start

    queue = unique("channels")
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue,
        name="channels",
        concurrency=2,
        WEIYU_SEMANTIC="off",
        CELERY_QUEUE=queue,  # what the worker enqueues itself (the robot, deliveries) stays here
        WEIYU_OUTBOUND_ALLOW=f"127.0.0.1:{fake_vendors.PORT}",
        WEIYU_CHANNEL_RETRY_S="0.2",
        WEIYU_CHANNEL_SEND_ATTEMPTS="3",
    )
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


def messaging_channel(desk: Desk, kind: str, base_url: str, *, aes: bool = False) -> Channel:
    """A channel of ``kind`` on the desk's workgroup, its account pointing at the fake."""
    with schema_context(desk.tenant.schema_name):
        channel = Channel.objects.create(
            name=unique(kind), kind=kind, workgroup=desk.workgroup, welcome_text="Welcome!"
        )
        if kind == Channel.Kind.TELEGRAM:
            ChannelAccount.objects.create(
                channel=channel,
                app_id="weiyu_test_bot",
                secret=BOT_TOKEN,
                verify_token=HOOK_SECRET,
                api_base_url=base_url,
            )
        else:
            ChannelAccount.objects.create(
                channel=channel,
                app_id=WX_APPID,
                secret="app-secret",
                verify_token=WX_TOKEN,
                aes_key=WX_AES_KEY if aes else "",
                api_base_url=base_url,
            )
    return channel


def wx_signed_query(*extra: str, timestamp: str | None = None, nonce: str = "n0nce") -> dict:
    """``signature``, ``timestamp``, ``nonce`` as WeChat signs a callback (``extra``: the
    encrypted body, for ``msg_signature``)."""
    timestamp = timestamp or str(int(time.time()))
    parts = sorted([WX_TOKEN, timestamp, nonce, *extra])
    digest = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()
    return {"timestamp": timestamp, "nonce": nonce, "signature": digest}


def visitor_session(schema: str, channel: Channel, external_id: str) -> Session | None:
    """The live session of the channel's customer ``external_id``, if one started."""
    with schema_context(schema):
        return (
            Session.objects.select_related("visitor")
            .filter(visitor__channel=channel, visitor__external_id=external_id)
            .exclude(status=Session.Status.CLOSED)
            .first()
        )


def channel_visitor(schema: str, channel: Channel, external_id: str) -> Visitor | None:
    with schema_context(schema):
        return Visitor.objects.filter(channel=channel, external_id=external_id).first()
