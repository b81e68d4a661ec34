"""A real SMTP server (aiosmtpd) and a Celery worker that sends to it, for tests of e-mail.
The fixtures are offered to every test through tests/conftest.py."""

from __future__ import annotations

import itertools
import os
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from tests.servers import celery_worker_start, free_port
from weiyu.celery import app

_queues = itertools.count(1)


class SmtpInbox:
    """Collects what the server receives: ``messages`` = [(recipients, email.message)]."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture
def smtp():
    """``(port, inbox)`` of an SMTP server on 127.0.0.1, for the test's duration."""
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def mail_worker(smtp):
    """A Celery worker on a queue of its own, sending e-mail to :func:`smtp`."""
    port, _inbox = smtp
    queue = f"mail{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="mail", concurrency=1, EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port), WEIYU_SEMANTIC="off",
    )  # fmt: skip
    yield
    worker.stop()
    app.conf.task_default_queue = previous
