"""A suspended tenant answers its staff with the suspension and refuses websockets (TEN-3);
what its widget still offers is in tests/tenants/test_quotas.py."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tenants.models import Tenant
from tenants.services import tenant_create, tenants_resume, tenants_suspend
from tests.conftest import PASSWORD, make_desk, make_visitor, unique
from tests.waits import WAIT_S, wait_until_async
from tests.ws import connect, receive_until
from weiyu import asgi_tenancy
from weiyu.asgi import application


@pytest.fixture(scope="module")
def initech(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        schema = unique("initech")
        return tenant_create(
            name="Initech",
            schema_name=schema,
            domain=f"{schema}.localhost",
            admin_username="bob",
            admin_password=PASSWORD,
        )


def _set_active(tenant: Tenant, active: bool) -> None:
    if active:
        tenants_resume(tenant_ids=[tenant.pk])
    else:
        tenants_suspend(tenant_ids=[tenant.pk])


async def _handshake(host: str) -> int | None:
    """The close code of a visitor socket's handshake on ``host`` (None: it was accepted)."""
    ws = WebsocketCommunicator(
        application, "/ws/visitor/?token=x", headers=[(b"host", host.encode())]
    )
    connected, code = await ws.connect(timeout=WAIT_S)
    if connected:
        await ws.disconnect()
        return None
    return code


@pytest.mark.asyncio
async def test_suspended_tenant_answers_403_and_refuses_websockets(initech, monkeypatch):
    host = f"{initech.schema_name}.localhost"
    client = Client(HTTP_HOST=host)
    # given a reachable tenant, whose host the websockets' cache holds (kept for an hour here,
    # so that only the suspension itself can end the entry)
    monkeypatch.setattr(asgi_tenancy, "CACHE_SECONDS", 3600.0)
    assert (await database_sync_to_async(client.get)("/healthz")).status_code == 200
    assert await _handshake(host) != 4404
    # when the platform suspends it
    await database_sync_to_async(_set_active)(initech, False)
    try:
        # then its pages answer 403 with the suspension
        response = await database_sync_to_async(client.get)("/healthz")
        assert response.status_code == 403
        assert "suspended" in response.content.decode()

        # and new websocket handshakes are closed with 4404 (from about a second after)
        async def refused() -> bool:
            return await _handshake(host) == 4404

        await wait_until_async(refused, what="a handshake refused with 4404")
    finally:
        await database_sync_to_async(_set_active)(initech, True)
    # and resuming brings it back, its websockets too (about a second later)
    assert (await database_sync_to_async(client.get)("/healthz")).status_code == 200

    async def accepted() -> bool:
        return await _handshake(host) != 4404

    await wait_until_async(accepted, what="a handshake no longer refused")


@pytest.mark.asyncio
async def test_an_open_socket_of_a_suspended_tenant_is_closed_at_its_next_frame(initech):
    host = f"{initech.schema_name}.localhost"
    # given a visitor chatting on the tenant's widget
    desk = await database_sync_to_async(make_desk)(initech, agents=0)
    _visitor, token = await database_sync_to_async(make_visitor)(desk)
    ws, _hello = await connect(f"/ws/visitor/?token={token}", host)
    await ws.send_json_to({"type": "ping", "ref": "p1"})
    assert (await receive_until(ws, "pong"))["ref"] == "p1"
    # when the platform suspends the tenant
    await database_sync_to_async(_set_active)(initech, False)
    try:
        # then the socket is closed with 4404 at a frame it sends (its pings go on until then)
        async def closed() -> bool:
            await ws.send_json_to({"type": "ping"})
            output = await ws.receive_output(timeout=WAIT_S)
            return output["type"] == "websocket.close" and output.get("code") == 4404

        await wait_until_async(closed, what="the socket closed with 4404")
    finally:
        await database_sync_to_async(_set_active)(initech, True)
