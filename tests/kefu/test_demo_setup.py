"""The demo tenant of the run command: no install shares a known password (SEC-1)."""

from __future__ import annotations

import io
import stat

from django.contrib.auth import authenticate
from django.core.management import call_command
from django_tenants.utils import schema_context

from kefu import selectors
from kefu.models import AgentState, Workgroup
from weiyu import devservices


def test_demo_accounts_get_a_random_password_kept_for_the_owner_only(tmp_path, monkeypatch):
    # given a checkout with no demo password yet, and one demo account left by an older run
    # with the old fixed password
    monkeypatch.setattr(devservices, "DATA_DIR", tmp_path)
    monkeypatch.delenv("WEIYU_DEMO_PASSWORD", raising=False)
    call_command("demo_setup", password="weiyu-demo", stdout=io.StringIO())

    # when the demo is set up as the run command does it
    call_command("demo_setup", stdout=io.StringIO())

    # then the password is random, kept in .data/demo_password readable by the owner only, and
    # every demo account answers to it, not to the old one
    kept = tmp_path / "demo_password"
    password = kept.read_text().strip()
    assert len(password) >= 12
    assert password != "weiyu-demo"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert devservices.demo_password() == (password, False)
    assert authenticate(username="platform", password=password) is not None
    with schema_context("demo"):
        for username in ("admin", "alice", "bob", "carol"):
            assert authenticate(username=username, password=password) is not None
            assert authenticate(username=username, password="weiyu-demo") is None

    # and a second run keeps it
    call_command("demo_setup", stdout=io.StringIO())
    assert kept.read_text().strip() == password
    with schema_context("demo"):
        assert authenticate(username="alice", password=password) is not None


def test_the_demo_marks_nobody_available_until_they_open_the_inbox(tmp_path, monkeypatch):
    monkeypatch.setattr(devservices, "DATA_DIR", tmp_path)
    call_command("demo_setup", password="a-demo-password", stdout=io.StringIO())
    with schema_context("demo"):
        # nobody has an inbox open, so a visitor is offered to leave a message, not told that
        # an agent is serving them
        assert not AgentState.objects.filter(connected=True).exists()
        for workgroup in Workgroup.objects.all():
            assert not selectors.workgroup_has_online_agent(workgroup_id=workgroup.pk)
