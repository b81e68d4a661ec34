"""Finding 3 of the security review (issue 12): a member who left a conversation — removed from
a group, or an agent who transferred the visitor to a colleague — must see nothing of it any
more, through any door: tickets made from it, history, search, files, blocking, drafts, invites,
websocket frames. Each door is tried with a former member; a 404 (JSON error) or an error frame
is the only answer, never content."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django_tenants.utils import schema_context
from PIL import Image

from im.senders import Sender
from im.services import groups
from im.services import messages as im_messages
from kefu.models import BlockedVisitor, Session
from kefu.services import messages as kefu_messages
from kefu.services import transfers
from org.models import User
from tenants.models import Tenant
from tests.conftest import make_agent, make_desk, make_visitor, session_cookie, unique
from tests.waits import WAIT_S
from tests.ws import connect, receive_until
from tickets.models import Ticket
from weiyu.realtime import capture_events

HOST = "acme.localhost"
SECRET = "the launch date is the 14th"


def _browser(user: User) -> Client:
    client = Client(HTTP_HOST=HOST, HTTP_ACCEPT_LANGUAGE="en", raise_request_exception=False)
    name, value = (
        session_cookie(Tenant.objects.get(schema_name="acme"), user).decode().split("=", 1)
    )
    client.cookies[name] = value
    return client


def _sender(user: User) -> Sender:
    return Sender(key=user.member_key, type="agent", name=user.name, user_id=user.pk)


def _png() -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 90, 200)).save(out, "PNG")
    out.seek(0)
    out.name = "plan.png"
    return out


@dataclass
class Departed:
    """A conversation, a former member of it and what was posted there (a file among it)."""

    former: User
    conversation_id: int
    attachment_id: int


def _removed_from_group() -> Departed:
    """Carol was in a group, saw a picture, was removed; the secret was said after she left."""
    owner, carol = make_agent(name="owner"), make_agent(name="carol")
    group = groups.group_create(creator=owner, title=unique("Launch"), member_ids=[carol.pk])
    upload = _browser(owner).post(
        "/api/v1/im/files",
        data={"file": _png(), "kind": "image", "conversation_id": str(group.pk)},
    )
    assert upload.status_code == 201, upload.content
    attachment_id = upload.json()["id"]
    im_messages.message_send(
        conversation_id=group.pk,
        sender=_sender(owner),
        msg_type="image",
        attachment_id=attachment_id,
        client_msg_id=unique("c"),
    )
    groups.group_member_remove(actor=owner, conversation_id=group.pk, user_id=carol.pk)
    im_messages.message_send(
        conversation_id=group.pk, sender=_sender(owner), content=SECRET, client_msg_id=unique("c")
    )
    return Departed(former=carol, conversation_id=group.pk, attachment_id=attachment_id)


def _transferred_away() -> Departed:
    """The first agent served a visitor, transferred them to a colleague who accepted; the visitor
    then told the colleague the secret."""
    desk = make_desk(Tenant.objects.get(schema_name="acme"), agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        from kefu.models import AgentState

        AgentState.objects.filter(user=colleague).update(status="away")
        message, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("v")
        )
        AgentState.objects.filter(user=colleague).update(status="online")
        cid = message.conversation_id
        assert Session.objects.get(conversation_id=cid).agent_id == first.pk
        upload = _browser(first).post(
            "/api/v1/im/files", data={"file": _png(), "kind": "image", "conversation_id": str(cid)}
        )
        assert upload.status_code == 201, upload.content
        transfer = transfers.transfer_request(
            user=first, conversation_id=cid, to_agent_id=colleague.pk
        )
        transfers.transfer_accept(user=colleague, transfer_id=transfer.pk)
        kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=cid, content=SECRET, client_msg_id=unique("v")
        )
    return Departed(former=first, conversation_id=cid, attachment_id=upload.json()["id"])


SCENARIOS = {"removed_from_group": _removed_from_group, "transferred_away": _transferred_away}


@pytest.fixture(params=list(SCENARIOS))
def departed(request, acme) -> Departed:
    with schema_context("acme"):
        return SCENARIOS[request.param]()


def _refused(response) -> dict:
    """A refusal: 403 or 404 with the JSON error shape, and not a word of the conversation."""
    assert response.status_code in (403, 404), (response.status_code, response.content)
    body = response.json()
    assert body["error"] in ("not_found", "forbidden")
    assert SECRET not in response.content.decode()
    return body


def test_a_former_member_cannot_make_a_ticket_of_the_conversation(departed):
    # when the former member turns the conversation into a ticket
    response = _browser(departed.former).post(
        "/api/v1/tickets",
        json.dumps({"subject": "notes", "body": "x", "conversation_id": departed.conversation_id}),
        content_type="application/json",
    )
    # then there is no such conversation for them, and no ticket holds its transcript
    assert _refused(response)["error"] == "not_found"
    with schema_context("acme"):
        assert not Ticket.objects.filter(conversation_id=departed.conversation_id).exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/im/conversations/{cid}",
        "/api/v1/im/conversations/{cid}/messages",
        "/api/v1/im/files/{aid}",
        "/api/v1/im/search?q=launch&conversation_id={cid}",
    ],
)
def test_a_former_member_reads_nothing_of_the_conversation(departed, path):
    url = path.format(cid=departed.conversation_id, aid=departed.attachment_id)
    response = _browser(departed.former).get(url)
    if "search" in url:
        # search answers with what the caller may see: nothing from this conversation
        assert response.status_code == 200
        assert response.json()["results"] == []
    else:
        _refused(response)


def test_a_former_agent_cannot_block_the_visitor_or_draft_or_invite(acme):
    with schema_context("acme"):
        departed = _transferred_away()
        other = make_agent(name="helper")
    client = _browser(departed.former)
    cid = departed.conversation_id
    for path, body in (
        ("/api/v1/kefu/blocks", {"conversation_id": cid, "minutes": 60}),
        ("/api/v1/kefu/drafts", {"conversation_id": cid}),
        ("/api/v1/kefu/invites", {"conversation_id": cid, "agent_id": other.pk}),
    ):
        response = client.post(path, json.dumps(body), content_type="application/json")
        assert _refused(response)["error"] == "not_found", path
    with schema_context("acme"):
        # the block did not happen: the visitor is still being served
        assert Session.objects.get(conversation_id=cid).status == "open"
        assert not BlockedVisitor.objects.filter(
            visitor_id=Session.objects.get(conversation_id=cid).visitor_id
        ).exists()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame",
    [
        {"type": "history.fetch", "limit": 50},
        {"type": "receipts.fetch", "seqs": [1, 2, 3]},
        {"type": "read.update", "read_seq": 3},
        {"type": "typing.start"},
        {"type": "message.send", "content": "still here?", "client_msg_id": "late-1"},
    ],
)
async def test_a_former_member_gets_an_error_frame_on_the_socket(acme, frame):
    departed = await database_sync_to_async(lambda: _in_acme(_removed_from_group))()
    cookie = await database_sync_to_async(session_cookie)(acme, departed.former)
    ws, _hello = await connect("/ws/agent/", HOST, cookie=cookie)
    try:
        await ws.send_json_to({**frame, "conversation_id": departed.conversation_id, "ref": "r"})
        error = await receive_until(ws, "error", timeout=WAIT_S)
        assert (error["code"], error["ref"]) == ("not_found", "r")
        assert SECRET not in json.dumps(error)
    finally:
        await ws.disconnect()


def _in_acme(make):
    with schema_context("acme"):
        return make()


def test_the_rating_goes_to_the_agent_serving_not_to_the_one_who_transferred_away(acme):
    desk = make_desk(acme, agents=2)
    first, colleague = sorted(desk.agents, key=lambda u: u.pk)
    visitor, _token = make_visitor(desk)
    with schema_context("acme"):
        from kefu import csat
        from kefu.models import AgentState
        from kefu.senders import agent_sender
        from kefu.services import sessions

        AgentState.objects.filter(user=colleague).update(status="away")
        message, _ = kefu_messages.visitor_message_send(
            visitor=visitor, conversation_id=None, content="hello", client_msg_id=unique("v")
        )
        AgentState.objects.filter(user=colleague).update(status="online")
        cid = message.conversation_id
        transfer = transfers.transfer_request(
            user=first, conversation_id=cid, to_agent_id=colleague.pk
        )
        transfers.transfer_accept(user=colleague, transfer_id=transfer.pk)
        session = Session.objects.get(conversation_id=cid)
        sessions.session_close(session_id=session.pk, closed_by=agent_sender(colleague))
        with capture_events() as events:
            csat.csat_submit(visitor=visitor, conversation_id=cid, score=2, comment="slow")
    submitted = [set(g) for event, g in events if event["type"] == "csat.submitted"]
    # the serving agent and the visitor's own sockets, not the agent who left
    assert submitted == [{f"acme.u.{colleague.pk}", f"acme.v.{visitor.pk}"}]
