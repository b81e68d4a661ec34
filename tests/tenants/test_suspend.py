"""A suspended tenant answers its staff with the suspension and refuses websockets (TEN-3);
what its widget still offers is in tests/tenants/test_quotas.py."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tenants.models import Tenant
from tenants.services import tenant_create, tenants_resume, tenants_suspend
from tests.conftest import PASSWORD, unique
from tests.waits import WAIT_S
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
    asgi_tenancy._tenant_cache.clear()  # the websockets' 30 s cache is what production waits out


@pytest.mark.asyncio
async def test_suspended_tenant_answers_403_and_refuses_websockets(initech):
    host = f"{initech.schema_name}.localhost"
    client = Client(HTTP_HOST=host)
    # given a reachable tenant
    assert (await database_sync_to_async(client.get)("/healthz")).status_code == 200
    # when the platform suspends it
    await database_sync_to_async(_set_active)(initech, False)
    try:
        # then its pages answer 403 with the suspension
        response = await database_sync_to_async(client.get)("/healthz")
        assert response.status_code == 403
        assert "suspended" in response.content.decode()
        # and a websocket handshake is closed with 4404
        ws = WebsocketCommunicator(
            application, "/ws/visitor/?token=x", headers=[(b"host", host.encode())]
        )
        connected, code = await ws.connect(timeout=WAIT_S)
        assert not connected
        assert code == 4404
    finally:
        await database_sync_to_async(_set_active)(initech, True)
    # and resuming brings it back
    assert (await database_sync_to_async(client.get)("/healthz")).status_code == 200
