"""A real SMTP server (aiosmtpd) and a Celery worker that sends to it, for tests of e-mail.
The fixtures are offered to every test through tests/conftest.py."""

from __future__ import annotations

import imaplib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.servers import celery_worker_start, free_port
from tests.waits import wait_until
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


def mail_worker_run(smtp: tuple[int, Any], **env: str) -> Iterator[None]:
    """While it runs: a Celery worker on a queue of its own, sending e-mail to :func:`smtp`,
    with ``env`` added to its environment."""
    port, _inbox = smtp
    queue = f"mail{os.getpid()}x{next(_queues)}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = celery_worker_start(
        queue=queue, name="mail", concurrency=1, EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port), WEIYU_SEMANTIC="off", **env,
    )  # fmt: skip
    yield
    worker.stop()
    app.conf.task_default_queue = previous


@pytest.fixture
def mail_worker(smtp):
    """A Celery worker on a queue of its own, sending e-mail to :func:`smtp`."""
    yield from mail_worker_run(smtp)


class ImapServer:
    """A real IMAP4rev1 server (pymap, in-memory ``dict`` backend) on 127.0.0.1 in a process of
    its own, with one mailbox user; :meth:`append` puts a mail in its INBOX as a delivery
    would."""

    user = "support"
    password = "imap-pass"

    def __init__(self) -> None:
        self.port = free_port()
        code = (
            "import sys; from pymap.main import main; sys.argv = ['pymap', '--host', "
            f"'127.0.0.1', '--port', '{self.port}', '--no-tls', '--no-service', 'admin', "
            f"'dict', '--demo-user', '{self.user}', '--demo-password', '{self.password}']; main()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, what="the IMAP server answering", timeout=60)

    def _answers(self) -> bool:
        try:
            imaplib.IMAP4("127.0.0.1", self.port, timeout=5).logout()
        except OSError:
            return False
        return True

    def append(self, raw: bytes) -> None:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.login(self.user, self.password)
        status, _data = client.append("INBOX", None, None, raw)
        client.logout()
        assert status == "OK"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def imap_server():
    """An :class:`ImapServer` for the module's tests."""
    server = ImapServer()
    yield server
    server.stop()
