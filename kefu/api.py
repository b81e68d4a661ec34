"""REST endpoints of customer service for agents (docs/api.md §8)."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kefu import (
    canned,
    exports,
    inbox_views,
    monitor,
    privacy,
    selectors,
    stats,
    supervision,
    visitors,
)
from kefu.channels import delivery as channel_delivery
from kefu.models import Label, Transfer
from kefu.robot import drafts as robot_drafts
from kefu.senders import agent_sender
from kefu.services import (
    attributes,
    blocking,
    contacts,
    merge,
    scheduled,
    snooze,
    transfers,
    workgroups,
)
from kefu.services import labels as label_services
from kefu.services import queue as kefu_queue
from kefu.services import sessions as kefu_sessions
from kefu.services import visitors as visitor_services
from org.middleware import reads_only
from weiyu import reports
from weiyu.errors import ServiceError
from weiyu.schema import JSON_OR_CSV, NO_CONTENT


class CannedListApi(APIView):
    """``GET /api/v1/kefu/canned?q=`` → ``{"canned": [{"id", "shortcut", "category", "title",
    "content", "shared"}]}`` (shared and one's own, by shortcut, at most 50).
    ``POST`` ``{"shortcut", "title", "content", "category"?}`` → 201 {canned}: a personal one.
    400 ``invalid``, 409 ``conflict`` for a shortcut one already has."""

    def get(self, request: Request) -> Response:
        items = canned.canned_list(user=request.user, q=request.query_params.get("q", "")[:64])
        return Response({"canned": [canned.canned_payload(i) for i in items]})

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ServiceError("invalid", _("A JSON object is expected."))
        item = canned.canned_create(
            user=request.user,
            shortcut=body.get("shortcut"),
            title=body.get("title"),
            content=body.get("content"),
            category=body.get("category", ""),
        )
        return Response(canned.canned_payload(item), status=status.HTTP_201_CREATED)


class CannedDetailApi(APIView):
    """``PATCH /api/v1/kefu/canned/<id>`` ``{"shortcut"?, "title"?, "content"?, "category"?}``
    → 200 {canned}; ``DELETE`` → 204. One's own only (404 otherwise); 400 ``invalid``, 409
    ``conflict`` for a shortcut one already has."""

    def patch(self, request: Request, pk: int) -> Response:
        if not isinstance(request.data, dict):
            raise ServiceError("invalid", _("A JSON object is expected."))
        item = canned.canned_update(user=request.user, canned_id=pk, changes=request.data)
        return Response(canned.canned_payload(item))

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        canned.canned_delete(user=request.user, canned_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BlockCreateApi(APIView):
    """``POST /api/v1/kefu/blocks`` ``{"conversation_id", "minutes"? (null: for good),
    "reason"?, "by_ip"? (also block the visitor's IP address)}`` → 201 ``{"id", "visitor_id",
    "network", "expires_at"}``; the conversation is closed. Agents in that conversation only
    (403/404)."""

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ServiceError("invalid", _("A JSON object is expected."))
        block = blocking.block_from_conversation(
            user=request.user,
            conversation_id=body.get("conversation_id"),
            minutes=body.get("minutes"),
            reason=body.get("reason", ""),
            by_ip=body.get("by_ip", False),
        )
        return Response(
            {
                "id": block.pk,
                "visitor_id": block.visitor_id,
                "network": block.network,
                "expires_at": block.expires_at.isoformat() if block.expires_at else None,
            },
            status=status.HTTP_201_CREATED,
        )


class BlockDetailApi(APIView):
    """``DELETE /api/v1/kefu/blocks/<id>`` → 204: lift a block (agents)."""

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        blocking.block_lift(user=request.user, block_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DraftApi(APIView):
    """``POST /api/v1/kefu/drafts`` ``{"conversation_id"}`` → 202 ``{"request_id"}``: an AI draft
    reply to the visitor's last question, written by a worker from the knowledge bases and
    streamed to the agent's sockets as ``assist.draft`` frames (docs/protocol.md §2.5). The
    agent must be in the customer conversation (404). 409 ``not_configured`` without an LLM
    provider, 409 ``nothing_to_answer`` before the visitor asked anything."""

    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ServiceError("invalid", _("A JSON object is expected."))
        request_id = robot_drafts.assist_draft_request(
            user=request.user, conversation_id=body.get("conversation_id")
        )
        return Response({"request_id": request_id}, status=status.HTTP_202_ACCEPTED)


def _body(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise ServiceError("invalid", _("A JSON object is expected."))
    return request.data


class TransferListApi(APIView):
    """``GET /api/v1/kefu/transfers`` → ``{"transfers": [transfer]}``: pending transfers to or
    from the caller. ``POST`` ``{"conversation_id", "to_agent_id" | "to_workgroup_id", "note"?}``
    → 201 {transfer}: to a colleague it waits for their answer (``transfer.requested`` to
    them); to a workgroup it is done at once (the conversation re-enters that queue). 400
    ``invalid``, 404, 409 ``conflict`` (not the caller's open conversation, or one is pending),
    409 ``unavailable_agent`` (the colleague is not online). Shape: ``kefu.services.transfers``."""

    def get(self, request: Request) -> Response:
        return Response({"transfers": transfers.pending_for_user(user=request.user)})

    def post(self, request: Request) -> Response:
        body = _body(request)
        transfer = transfers.transfer_request(
            user=request.user,
            conversation_id=body.get("conversation_id"),
            to_agent_id=body.get("to_agent_id"),
            to_workgroup_id=body.get("to_workgroup_id"),
            note=body.get("note", ""),
        )
        transfer = Transfer.objects.select_related(
            "session__visitor", "from_agent", "to_agent", "to_workgroup"
        ).get(pk=transfer.pk)
        return Response(transfers.transfer_payload(transfer), status=status.HTTP_201_CREATED)


class TransferActionApi(APIView):
    """``POST /api/v1/kefu/transfers/<id>/accept`` (the colleague takes it; 409 ``full`` at
    their cap), ``/decline`` (the first agent keeps it) or ``/cancel`` (the first agent
    withdraws it) → 200 {transfer}; 404 when it is not the caller's to answer, 409
    ``conflict`` once answered or expired."""

    actions = {
        "accept": transfers.transfer_accept,
        "decline": transfers.transfer_decline,
        "cancel": transfers.transfer_cancel,
    }

    def post(self, request: Request, pk: int, action: str) -> Response:
        if action not in self.actions:
            raise ServiceError("not_found", _("No such action."))
        transfer = self.actions[action](user=request.user, transfer_id=pk)
        transfer = Transfer.objects.select_related(
            "session__visitor", "from_agent", "to_agent", "to_workgroup"
        ).get(pk=transfer.pk)
        return Response(transfers.transfer_payload(transfer))


class DeliveryRetryApi(APIView):
    """``POST /api/v1/kefu/deliveries/<id>/retry`` → 200 ``{"id", "status": "queued", "error",
    "attempts"}``: send again a reply a messaging channel did not deliver (the inbox's Retry on
    "Not delivered: …"; docs/channels.md). 404 ``not_found`` unless the caller is in the
    conversation, 409 ``conflict`` when it is not failed (sent, or being sent)."""

    def post(self, request: Request, pk: int) -> Response:
        delivery = channel_delivery.delivery_retry(user=request.user, delivery_id=pk)
        return Response(channel_delivery.delivery_payload(delivery))


class InviteApi(APIView):
    """``POST /api/v1/kefu/invites`` ``{"conversation_id", "agent_id"}`` → 201 ``{"agent":
    {"id", "name"}}``: the colleague joins the caller's open conversation as a second agent."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        colleague = transfers.invite(
            user=request.user,
            conversation_id=body.get("conversation_id"),
            agent_id=body.get("agent_id"),
        )
        return Response(
            {"agent": {"id": colleague.pk, "name": colleague.name}}, status=status.HTTP_201_CREATED
        )


class AgentListApi(APIView):
    """``GET /api/v1/kefu/agents`` → ``{"agents": [{"id", "name", "status", "open_count",
    "max_concurrent", "workgroups": [{"id", "name"}]}], "workgroups": [{"id", "name"}]}``:
    the team with their service status and load (the transfer picker; staff only)."""

    def get(self, request: Request) -> Response:
        return Response(selectors.team_overview())


class VisitorApi(APIView):
    """``GET /api/v1/kefu/visitors/<id>`` → the visitor panel (shape: ``kefu.visitors.profile``):
    browser, OS, IP, language, referrer, page trail, tags, notes, past conversations. Agents."""

    def get(self, request: Request, pk: int) -> Response:
        return Response(visitors.profile(user=request.user, visitor_id=pk))


class VisitorTagsApi(APIView):
    """``POST /api/v1/kefu/visitors/<id>/tags`` ``{"name"}`` → 201 ``{"tags": [name]}``."""

    def post(self, request: Request, pk: int) -> Response:
        tags = visitor_services.tag_add(
            user=request.user, visitor_id=pk, name=_body(request).get("name")
        )
        return Response({"tags": tags}, status=status.HTTP_201_CREATED)


class VisitorTagApi(APIView):
    """``DELETE /api/v1/kefu/visitors/<id>/tags/<name>`` → 200 ``{"tags": [name]}``."""

    def delete(self, request: Request, pk: int, name: str) -> Response:
        return Response(
            {"tags": visitor_services.tag_remove(user=request.user, visitor_id=pk, name=name)}
        )


class VisitorNotesApi(APIView):
    """``POST /api/v1/kefu/visitors/<id>/notes`` ``{"text"}`` (1-2,000 chars) → 201 ``{"id",
    "text", "author", "created_at"}``."""

    def post(self, request: Request, pk: int) -> Response:
        note = visitor_services.note_add(
            user=request.user, visitor_id=pk, text=_body(request).get("text")
        )
        return Response(
            {
                "id": note.pk,
                "text": note.text,
                "author": request.user.name,
                "created_at": note.created_at.isoformat(),
            },
            status=status.HTTP_201_CREATED,
        )


class AttributeDefinitionListApi(APIView):
    """``GET /api/v1/kefu/attributes`` → ``{"contact": [definition], "conversation":
    [definition]}``: the custom attributes the tenant's administrators defined (back office,
    Customer service → Custom attributes); definition: ``{"key", "name", "kind": "text" |
    "number" | "date" | "list" | "boolean", "applies_to", "options": [text], "description"}``.
    Agents (403 otherwise)."""

    def get(self, request: Request) -> Response:
        visitors.staff_require(request.user)
        defs = [attributes.definition_payload(d) for d in attributes.definitions()]
        return Response(
            {
                "contact": [d for d in defs if d["applies_to"] == "contact"],
                "conversation": [d for d in defs if d["applies_to"] == "conversation"],
            }
        )


class VisitorAttributesApi(APIView):
    """``GET /api/v1/kefu/visitors/<id>/attributes`` → ``{"attributes": {key: value},
    "fields": [definition with "value"]}``. ``PATCH`` ``{"attributes": {key: value | null}}``
    → 200 the same after the change: each key must be a defined contact attribute and each
    value of its kind (text ≤ 500, number, ``YYYY-MM-DD``, one of a list's values, true/false;
    null removes it). Sends ``visitor.updated``. Agents; 400 ``invalid`` with ``field``
    ``attributes.<key>``, 404 unknown visitor."""

    @staticmethod
    def _answer(values: dict) -> Response:
        return Response({"attributes": values, "fields": attributes.panel("contact", values)})

    def get(self, request: Request, pk: int) -> Response:
        visitors.staff_require(request.user)
        return self._answer(visitors.visitor_get(pk).attributes or {})

    def patch(self, request: Request, pk: int) -> Response:
        values = visitor_services.contact_attributes_set(
            user=request.user, visitor_id=pk, values=_body(request).get("attributes")
        )
        return self._answer(values)


class ConversationAttributesApi(APIView):
    """``GET /api/v1/kefu/conversations/<id>/attributes`` → ``{"attributes": {key: value},
    "fields": [definition with "value"]}`` of a customer conversation. ``PATCH``
    ``{"attributes": {key: value | null}}`` → 200 the same after the change (rules as for
    contacts, against the conversation definitions); sends ``conversation.attributes``. Who:
    administrators, its agent, agents of its workgroup and members (404 others)."""

    def get(self, request: Request, pk: int) -> Response:
        fields = attributes.conversation_attributes_get(user=request.user, conversation_id=pk)
        values = {f["key"]: f["value"] for f in fields if f["value"] is not None}
        return Response({"attributes": values, "fields": fields})

    def patch(self, request: Request, pk: int) -> Response:
        values = attributes.conversation_attributes_set(
            user=request.user, conversation_id=pk, values=_body(request).get("attributes")
        )
        return Response({"attributes": values, "fields": attributes.panel("conversation", values)})


class ContactListApi(APIView):
    """``GET /api/v1/kefu/contacts?q=<text>&attribute=<key>=<value>&exclude=<visitor id>`` →
    ``{"contacts": [{"id", "name", "email", "phone", "external_id", "channel", "attributes",
    "last_seen", "conversations"}]}``: contacts (visitors and known customers) by name, e-mail,
    phone or customer id (``q``, ≥ 2 characters) and/or a custom attribute, not merged away,
    most recently seen first, ≤ 20 (``kefu.services.contacts.contact_search``). Agents; 400
    ``invalid`` without a filter or with a bad one."""

    def get(self, request: Request) -> Response:
        params = request.query_params
        exclude = inbox_views.int_or_none(params.get("exclude"), "exclude")
        found = contacts.contact_search(
            user=request.user,
            q=params.get("q"),
            attribute=params.get("attribute"),
            exclude=exclude,
        )
        return Response({"contacts": found})


class VisitorMergeApi(APIView):
    """``POST /api/v1/kefu/visitors/<id>/merge`` ``{"other_id"}`` → 200 the kept contact's
    panel (``GET /api/v1/kefu/visitors/<id>``): the other contact's conversations, notes, tags,
    page trail and attributes are this one's now, and the other points here
    (``kefu.services.contacts.contact_merge``; recorded in the audit log). Agents; 400
    ``invalid`` (the same contact), 404 unknown, 409 ``conflict`` (merged or erased already)."""

    def post(self, request: Request, pk: int) -> Response:
        contacts.contact_merge(
            user=request.user, visitor_id=pk, other_id=_body(request).get("other_id")
        )
        return Response(visitors.profile(user=request.user, visitor_id=pk))


class MonitorApi(APIView):
    """``GET /api/v1/kefu/monitor?workgroup=&agent=&status=&waiting=&order=&offset=&limit=`` →
    the live monitor (shape: ``kefu.monitor.snapshot``): per workgroup the agents with status
    and load, queue length, longest wait, conversations in progress; and one page of the live
    conversations matching the filters with their ``total`` (``kefu.monitor.monitor_filters``).
    Supervisors only (403); 400 ``invalid`` naming a bad parameter."""

    def get(self, request: Request) -> Response:
        monitor.require_supervisor(request.user)
        filters = monitor.monitor_filters(request.query_params)
        return Response(monitor.snapshot(user=request.user, **filters))


class StatsApi(APIView):
    """``GET /api/v1/kefu/stats?start=YYYY-MM-DD&end=YYYY-MM-DD&workgroup=<id>`` → the report
    of ``kefu.stats.report`` (local days, default the last 30; ``labels``: conversations per
    label); ``&export=csv&part=daily|agents|workgroups|labels`` → that part as CSV. Supervisors only (403), who get the workgroups they supervise only (``kefu.supervision``); 400 for bad dates."""

    @extend_schema(responses=JSON_OR_CSV)
    def get(self, request: Request) -> Response | HttpResponse:
        if not monitor.is_supervisor(request.user):
            raise ServiceError("forbidden", _("Only supervisors can see the statistics."))
        params = request.query_params
        try:
            start, end = reports.date_range(params)
            workgroup = int(params["workgroup"]) if params.get("workgroup") else None
            data = stats.report(
                start=start,
                end=end,
                workgroup_id=workgroup,
                workgroup_ids=supervision.supervised_workgroup_ids(request.user),
            )
        except ValueError as exc:
            raise reports.range_error() from exc
        part = reports.csv_part(
            params, ("daily", "agents", "workgroups", "labels"), unknown=_("Unknown part.")
        )
        if part is not None:
            stats.export_record(user=request.user, part=part, start=start, end=end)
            return reports.csv_response(
                stats.csv_rows(data, part), f"service-{part}-{start}-{end}.csv"
            )
        return Response(data)


class QueueApi(APIView):
    """``GET /api/v1/kefu/queue`` → ``{"workgroups": [{"id", "name", "allow_pick", "waiting":
    [{"session_id", "conversation_id", "visitor", "queued_at", "preview"}]}]}``: the caller's
    workgroups' waiting visitors, oldest first (agents get ``queue.changed`` when they move)."""

    def get(self, request: Request) -> Response:
        return Response({"workgroups": selectors.queue_overview(user=request.user)})


class QueuePickApi(APIView):
    """``POST /api/v1/kefu/queue/<session_id>/pick`` → 200 ``{"conversation_id"}``: the caller
    takes that waiting visitor (404 not in their workgroups' queues, 403 picking off or not
    online, 409 ``conflict`` taken meanwhile or ``full`` at their cap)."""

    def post(self, request: Request, pk: int) -> Response:
        session = kefu_queue.queue_pick(user=request.user, session_id=pk)
        return Response({"conversation_id": session.conversation_id})


class WorkgroupApi(APIView):
    """``GET /api/v1/kefu/workgroups/<id>`` → ``{"id", "name", "strategy", "allow_pick",
    "requeue_on_leave"}``; ``PATCH`` ``{"requeue_on_leave"?: bool, "allow_pick"?: bool}`` → the
    same. Administrators only (403); 400 ``invalid``, 404."""

    def get(self, request: Request, pk: int) -> Response:
        return Response(workgroups.workgroup_settings_get(user=request.user, workgroup_id=pk))

    def patch(self, request: Request, pk: int) -> Response:
        return Response(
            workgroups.workgroup_settings_update(
                user=request.user, workgroup_id=pk, changes=request.data
            )
        )


class LabelListApi(APIView):
    """``GET /api/v1/kefu/labels`` → ``{"labels": [{"id", "name", "color", "description"}]}``
    (by name; every agent). ``POST`` ``{"name", "color"?, "description"?}`` → 201 {label}:
    administrators only (403); 400 ``invalid``, 409 ``conflict`` for a name in use."""

    def get(self, request: Request) -> Response:
        return Response({"labels": [inbox_views.label_payload(lb) for lb in Label.objects.all()]})

    def post(self, request: Request) -> Response:
        body = _body(request)
        label = label_services.label_create(
            user=request.user,
            name=body.get("name"),
            color=body.get("color", "#6e7781"),
            description=body.get("description", ""),
        )
        return Response(inbox_views.label_payload(label), status=status.HTTP_201_CREATED)


class LabelDetailApi(APIView):
    """``PATCH /api/v1/kefu/labels/<id>`` ``{"name"?, "color"?, "description"?}`` → {label};
    ``DELETE`` → 204 (it leaves every conversation). Administrators only (403); 404."""

    def patch(self, request: Request, pk: int) -> Response:
        label = label_services.label_update(user=request.user, label_id=pk, changes=_body(request))
        return Response(inbox_views.label_payload(label))

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        label_services.label_delete(user=request.user, label_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _labels_answer(sessions: list) -> Response:
    return Response(
        {
            "conversations": [
                {
                    "conversation_id": s.conversation_id,
                    "labels": [inbox_views.label_payload(lb) for lb in s.labels.all()],
                }
                for s in sessions
            ]
        }
    )


class ConversationLabelsApi(APIView):
    """``POST /api/v1/kefu/conversations/<id>/labels`` ``{"add"?: [label id], "remove"?: [label
    id]}`` → ``{"conversations": [{"conversation_id", "labels": [label]}]}``. Agents of the
    conversation's workgroup, its agent, its participants and administrators (404 otherwise);
    400 ``invalid``. Everyone concerned gets ``conversation.labels``."""

    def post(self, request: Request, pk: int) -> Response:
        body = _body(request)
        sessions = label_services.labels_change(
            user=request.user,
            conversation_ids=[pk],
            add=body.get("add"),
            remove=body.get("remove"),
        )
        return _labels_answer(sessions)


class ConversationLabelsBulkApi(APIView):
    """``POST /api/v1/kefu/conversations/labels`` ``{"conversation_ids": [id] (1-100), "add"?,
    "remove"?}`` → as for one conversation, for each. All or nothing: one conversation the
    caller may not label → 404 and nothing changes."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        sessions = label_services.labels_change(
            user=request.user,
            conversation_ids=body.get("conversation_ids"),
            add=body.get("add"),
            remove=body.get("remove"),
        )
        return _labels_answer(sessions)


class ConversationViewListApi(APIView):
    """``GET /api/v1/kefu/conversations?view=mine|unassigned|open|waiting|snoozed|closed&workgroup=<id>&
    label=<id>&channel=<id>&attribute=<key>=<value>&sort=newest|waiting&limit=1-200`` → ``{"filters", "conversations":
    [row]}``: one view of the inbox's list (rows: ``kefu.inbox_views.conversation_list_for_view``;
    ``closed``: the last 7 days). Administrators see the whole tenant, agents their workgroups'
    conversations and the ones they serve. 400 ``invalid`` for an unknown view or sort."""

    def get(self, request: Request) -> Response:
        params = request.query_params
        filters = inbox_views.filters_clean(
            {
                k: params.get(k)
                for k in ("view", "workgroup", "label", "channel", "attribute", "sort")
            }
        )
        limit = inbox_views.int_or_none(params.get("limit"), "limit") or 100
        return Response(
            {
                "filters": filters,
                "conversations": inbox_views.conversation_list_for_view(
                    user=request.user, filters=filters, limit=limit
                ),
            }
        )


class ConversationCloseApi(APIView):
    """``POST /api/v1/kefu/conversations/<id>/close`` → 200 ``{"conversation_id", "status":
    "closed", "closed_at"}``: end a customer conversation the caller is in (the same service as
    the socket's ``conversation.close`` frame: the visitor reads that it ended, the agent's load
    is released, the audit log records it). Idempotent. 404 for anyone not (or no longer) in
    it and for other tenants' conversations."""

    def post(self, request: Request, pk: int) -> Response:
        session = kefu_sessions.conversation_close_by_member(
            conversation_id=pk, sender=agent_sender(request.user)
        )
        return Response(
            {
                "conversation_id": session.conversation_id,
                "status": session.status,
                "closed_at": session.closed_at.isoformat() if session.closed_at else None,
            }
        )


class ConversationSnoozeApi(APIView):
    """``POST /api/v1/kefu/conversations/<id>/snooze`` ``{"until": ISO 8601 with a zone | null}``
    → 200 ``{"conversation_id", "snoozed": true, "snoozed_at", "snoozed_until"}``: put the open
    customer conversation aside until that time, or (``null``) until the customer replies; it
    comes back by itself (kefu.services.snooze). ``DELETE`` → 200 the same with ``"snoozed":
    false``: bring it back now. Agents in the conversation only (404 for others and former
    participants), 400 ``invalid`` (a time in the past, more than 365 days ahead, no zone),
    409 ``conflict`` (not open)."""

    @staticmethod
    def _answer(session) -> Response:
        return Response(
            {
                "conversation_id": session.conversation_id,
                "snoozed": session.snoozed_at is not None,
                "snoozed_at": session.snoozed_at.isoformat() if session.snoozed_at else None,
                "snoozed_until": (
                    session.snoozed_until.isoformat() if session.snoozed_until else None
                ),
            }
        )

    def post(self, request: Request, pk: int) -> Response:
        body = _body(request)
        session = snooze.conversation_snooze(
            user=request.user, conversation_id=pk, until=body.get("until")
        )
        return self._answer(session)

    def delete(self, request: Request, pk: int) -> Response:
        return self._answer(snooze.conversation_unsnooze(user=request.user, conversation_id=pk))


class ScheduledListApi(APIView):
    """``GET /api/v1/kefu/conversations/<id>/scheduled`` → ``{"scheduled": [scheduled]}``
    (pending by time, then the 20 latest sent, failed or cancelled). ``POST`` ``{"content"
    (1-5,000 chars), "send_at" (ISO 8601 with a zone, in the future, ≤ 365 days), "timezone"?
    (IANA name the time was chosen in; default the visitor's)}`` → 201 {scheduled}: sent at that
    time as the caller's reply, by the beat, exactly once. Shape: ``kefu.services.scheduled.
    scheduled_payload``. Agents in the open customer conversation only (404 for others and
    former participants), 400 ``invalid``, 409 ``conversation_closed``."""

    def get(self, request: Request, pk: int) -> Response:
        items = selectors.scheduled_list_for_member(
            member_key=request.user.member_key, conversation_id=pk
        )
        return Response({"scheduled": [scheduled.scheduled_payload(i) for i in items]})

    def post(self, request: Request, pk: int) -> Response:
        body = _body(request)
        item = scheduled.scheduled_create(
            user=request.user,
            conversation_id=pk,
            content=body.get("content"),
            send_at=body.get("send_at"),
            zone=body.get("timezone"),
        )
        return Response(scheduled.scheduled_payload(item), status=status.HTTP_201_CREATED)


class ScheduledDetailApi(APIView):
    """``PATCH /api/v1/kefu/scheduled/<id>`` ``{"content"?, "send_at"?, "timezone"?}`` → 200
    {scheduled}; ``DELETE`` → 200 {scheduled} now ``cancelled``. The author's own pending message
    only: 404 for another's, 409 ``conflict`` once sent, failed or cancelled, 400 ``invalid``."""

    def patch(self, request: Request, pk: int) -> Response:
        item = scheduled.scheduled_update(
            user=request.user, scheduled_id=pk, changes=_body(request)
        )
        return Response(scheduled.scheduled_payload(item))

    def delete(self, request: Request, pk: int) -> Response:
        item = scheduled.scheduled_cancel(user=request.user, scheduled_id=pk)
        return Response(scheduled.scheduled_payload(item))


class ConversationExportApi(APIView):
    """``GET /api/v1/kefu/conversations/<id>/export?kind=csv|json`` → a download of one
    customer conversation (``kefu.exports.conversation_export``): CSV, one row per message
    (``seq, created_at, sender, sender_type, type, text, internal``), or JSON ``{"conversation",
    "messages"}``. The printable transcript is ``/inbox/conversations/<id>/print/``. Agents in
    the conversation and supervisors (404 for others, former participants, other tenants); 400
    ``invalid`` for another kind."""

    @extend_schema(responses=JSON_OR_CSV)
    def get(self, request: Request, pk: int) -> HttpResponse:
        # not ?format=: DRF keeps that name for choosing its own renderer
        fmt = request.query_params.get("kind") or "json"
        if fmt not in ("csv", "json"):
            raise ServiceError("invalid", _("kind must be csv or json."), field="kind")
        data = exports.conversation_export(user=request.user, conversation_id=pk)
        name = f"conversation-{pk}.{fmt}"
        if fmt == "csv":
            return reports.csv_response(exports.conversation_csv(data), name)
        response = HttpResponse(
            exports.conversation_json(data), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


@reads_only
class ExportListApi(APIView):
    """``POST /api/v1/kefu/exports`` ``{"format": "csv"|"json", "filters"?: {"status"?,
    "start"?, "end"? (local dates YYYY-MM-DD), "workgroup_id"?, "agent_id"?, "q"? (visitor
    name, e-mail or phone)}}`` → 202 {export}: the matching customer conversations, written by a
    worker (``kefu.exports.export_job_payload``: ``state``, ``progress`` 0-100,
    ``download_url`` once done). Supervisors and auditors only (403); 400 ``invalid``."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        job = exports.export_job_create(
            user=request.user, fmt=body.get("format"), filters=body.get("filters")
        )
        return Response(exports.export_job_payload(job), status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    """``GET /api/v1/kefu/exports/<id>`` → {export} (its progress); the requester's own only
    (404 otherwise)."""

    def get(self, request: Request, pk: int) -> Response:
        return Response(
            exports.export_job_payload(exports.export_job_get(user=request.user, job_id=pk))
        )


class ExportDownloadApi(APIView):
    """``GET /api/v1/kefu/exports/<id>/download`` → the file (CSV with a BOM, or JSON); the
    requester's own only (404 otherwise), 409 ``conflict`` while it is being written."""

    @extend_schema(responses=JSON_OR_CSV)
    def get(self, request: Request, pk: int) -> HttpResponse:
        content, kind, name = exports.export_job_file(user=request.user, job_id=pk)
        response = HttpResponse(content, content_type=kind)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ConversationMergeApi(APIView):
    """``GET /api/v1/kefu/conversations/<id>/merge`` → ``{"candidates": [{"conversation_id",
    "visitor", "status", "created_at", "closed_at", "agent"}]}``: the same customer's other
    conversations (same visitor, e-mail or phone). ``POST`` ``{"other_conversation_id"}`` → 200
    ``{"conversation_id", "merged_conversation_id", "transcript_url"}``: that one is closed and
    points at this one, whose transcript (export, print) has both in order
    (``kefu.services.merge``). Agents in the conversation only (404 for others and former
    participants); 400 ``invalid`` (another customer's, the same one), 409 ``conflict``
    (merged already)."""

    def get(self, request: Request, pk: int) -> Response:
        return Response(
            {"candidates": merge.merge_candidates(user=request.user, conversation_id=pk)}
        )

    def post(self, request: Request, pk: int) -> Response:
        other = merge.conversation_merge(
            user=request.user,
            conversation_id=pk,
            other_conversation_id=_body(request).get("other_conversation_id"),
        )
        return Response(
            {
                "conversation_id": pk,
                "merged_conversation_id": other.conversation_id,
                "transcript_url": f"/inbox/conversations/{pk}/print/",
            }
        )


class ViewCountsApi(APIView):
    """``GET /api/v1/kefu/views`` → the view bar with live counts (shape:
    ``kefu.inbox_views.view_counts``): the built-in views, the caller's workgroups, the
    channels, the labels and the saved views, each with how many conversations it holds."""

    def get(self, request: Request) -> Response:
        return Response(inbox_views.view_counts(user=request.user))


class SavedViewListApi(APIView):
    """``GET /api/v1/kefu/saved-views`` → ``{"saved_views": [{"id", "name", "filters",
    "shared"}]}`` (one's own and the shared ones). ``POST`` ``{"name", "filters": {"view",
    "workgroup"?, "label"?, "channel"?, "sort"?}, "shared"?: bool}`` → 201 {saved view};
    ``shared`` is for administrators (403). 400 ``invalid``, 409 ``conflict`` past 50 views."""

    def get(self, request: Request) -> Response:
        views = inbox_views.saved_views_for(request.user)
        return Response({"saved_views": [inbox_views.saved_view_payload(v) for v in views]})

    def post(self, request: Request) -> Response:
        body = _body(request)
        view = label_services.saved_view_create(
            user=request.user,
            name=body.get("name"),
            filters=body.get("filters"),
            shared=body.get("shared", False),
        )
        return Response(inbox_views.saved_view_payload(view), status=status.HTTP_201_CREATED)


class SavedViewDetailApi(APIView):
    """``DELETE /api/v1/kefu/saved-views/<id>`` → 204: one's own, or a shared one
    (administrators); 404 otherwise."""

    @extend_schema(responses=NO_CONTENT)
    def delete(self, request: Request, pk: int) -> Response:
        label_services.saved_view_delete(user=request.user, view_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VisitorExportApi(APIView):
    """``GET /api/v1/kefu/visitors/<id>/export`` → 200 everything held about the visitor, as
    one JSON document (shape: ``kefu.privacy.visitor_export``), sent as a download
    (``visitor-<id>.json``). Administrators only (403 ``forbidden``); 404 ``not_found``."""

    def get(self, request: Request, pk: int) -> Response:
        document = privacy.visitor_export(user=request.user, visitor_id=pk)
        response = Response(document)
        response["Content-Disposition"] = f'attachment; filename="visitor-{pk}.json"'
        return response


class VisitorEraseApi(APIView):
    """``POST /api/v1/kefu/visitors/<id>/erase`` → 200 ``{"conversations", "messages",
    "tickets", "scheduled_messages"}`` (counts): the visitor's personal data erased, their
    conversations redacted and files deleted, replies scheduled to them withdrawn, statistics
    kept (``kefu.privacy.visitor_erase``). Idempotent.
    Administrators only (403 ``forbidden``); 404 ``not_found``."""

    def post(self, request: Request, pk: int) -> Response:
        return Response(privacy.visitor_erase(user=request.user, visitor_id=pk))


urlpatterns = [
    path("labels", LabelListApi.as_view(), name="labels"),
    path("labels/<int:pk>", LabelDetailApi.as_view(), name="label"),
    path("conversations", ConversationViewListApi.as_view(), name="conversation-views"),
    path("conversations/labels", ConversationLabelsBulkApi.as_view(), name="labels-bulk"),
    path("conversations/<int:pk>/labels", ConversationLabelsApi.as_view(), name="conv-labels"),
    path("views", ViewCountsApi.as_view(), name="views"),
    path("saved-views", SavedViewListApi.as_view(), name="saved-views"),
    path("saved-views/<int:pk>", SavedViewDetailApi.as_view(), name="saved-view"),
    path("workgroups/<int:pk>", WorkgroupApi.as_view(), name="workgroup"),
    path("queue", QueueApi.as_view(), name="queue"),
    path("queue/<int:pk>/pick", QueuePickApi.as_view(), name="queue-pick"),
    path("stats", StatsApi.as_view(), name="stats"),
    path("monitor", MonitorApi.as_view(), name="monitor"),
    path("visitors/<int:pk>", VisitorApi.as_view(), name="visitor"),
    path("attributes", AttributeDefinitionListApi.as_view(), name="attributes"),
    path("contacts", ContactListApi.as_view(), name="contacts"),
    path("visitors/<int:pk>/attributes", VisitorAttributesApi.as_view(), name="visitor-attrs"),
    path("visitors/<int:pk>/merge", VisitorMergeApi.as_view(), name="visitor-merge"),
    path(
        "conversations/<int:pk>/attributes",
        ConversationAttributesApi.as_view(),
        name="conversation-attrs",
    ),
    path("visitors/<int:pk>/tags", VisitorTagsApi.as_view(), name="visitor-tags"),
    path("visitors/<int:pk>/tags/<str:name>", VisitorTagApi.as_view(), name="visitor-tag"),
    path("visitors/<int:pk>/notes", VisitorNotesApi.as_view(), name="visitor-notes"),
    path("visitors/<int:pk>/export", VisitorExportApi.as_view(), name="visitor-export"),
    path("visitors/<int:pk>/erase", VisitorEraseApi.as_view(), name="visitor-erase"),
    path("transfers", TransferListApi.as_view(), name="transfers"),
    path("transfers/<int:pk>/<slug:action>", TransferActionApi.as_view(), name="transfer-action"),
    path("invites", InviteApi.as_view(), name="invites"),
    path("deliveries/<int:pk>/retry", DeliveryRetryApi.as_view(), name="delivery-retry"),
    path("agents", AgentListApi.as_view(), name="agents"),
    path("drafts", DraftApi.as_view(), name="drafts"),
    path("blocks", BlockCreateApi.as_view(), name="block-create"),
    path("blocks/<int:pk>", BlockDetailApi.as_view(), name="block-detail"),
    path("canned", CannedListApi.as_view(), name="canned-list"),
    path("canned/<int:pk>", CannedDetailApi.as_view(), name="canned-detail"),
    path(
        "conversations/<int:pk>/snooze", ConversationSnoozeApi.as_view(), name="conversation-snooze"
    ),
    path("conversations/<int:pk>/scheduled", ScheduledListApi.as_view(), name="scheduled-list"),
    path("scheduled/<int:pk>", ScheduledDetailApi.as_view(), name="scheduled-detail"),
    path(
        "conversations/<int:pk>/export", ConversationExportApi.as_view(), name="conversation-export"
    ),
    path("conversations/<int:pk>/close", ConversationCloseApi.as_view(), name="conversation-close"),
    path("conversations/<int:pk>/merge", ConversationMergeApi.as_view(), name="conversation-merge"),
    path("exports", ExportListApi.as_view(), name="exports"),
    path("exports/<int:pk>", ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:pk>/download", ExportDownloadApi.as_view(), name="export-download"),
]
