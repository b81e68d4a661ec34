"""Exporting customer conversations (issue 17, "Export"; docs/api.md §16).

- One conversation, at once: :func:`conversation_export` (its details and every message in
  order, internal notes marked) as CSV, JSON (:func:`conversation_csv`, :func:`conversation_json`)
  or a printable transcript page (``kefu/transcript_print.html``, print CSS). For an agent in the
  conversation (not a former participant) or a supervisor.
- A filtered list, by a worker: :func:`export_job_create` (supervisors) stores an
  :class:`~kefu.models.ExportJob` and queues ``kefu.exports.export_job_task``, which writes the
  file in batches, moving ``done``/``total`` as it goes (the progress the inbox and the back
  office show); the requester downloads it when it is ``done``.

Every export is recorded in the audit log (``org.audit.EXPORT``). Cells that a spreadsheet would
run as a formula (starting with ``= + - @``, tab or CR) are prefixed with ``'`` (OWASP, "CSV
injection").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from im import selectors as im_selectors
from im.models import Message
from im.syslines import message_text
from kefu import inbox_views, monitor, supervision
from kefu.models import ExportJob, Session
from kefu.services import attributes
from kefu.services.merge import merged_conversation_ids
from org import audit
from org.models import User
from weiyu import parsing
from weiyu.errors import ServiceError

#: messages of one conversation exported at most
MAX_MESSAGES = 20_000
#: conversations of one list export at most
MAX_CONVERSATIONS = 50_000
#: conversations written between two progress updates
BATCH = 200

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _session_info(session: Session) -> dict[str, Any]:
    visitor = session.visitor
    return {
        "conversation_id": session.conversation_id,
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name,
            "email": visitor.email,
            "phone": visitor.phone,
            "timezone": visitor.timezone,
        },
        "channel": session.channel.name,
        "workgroup": session.workgroup.name,
        "agent": session.agent.name if session.agent else None,
        "status": session.status,
        "created_at": _iso(session.created_at),
        "first_response_at": _iso(session.first_response_at),
        "closed_at": _iso(session.closed_at),
        "csat_score": session.csat_score,
    }


def _message_row(m: Message) -> dict[str, Any]:
    if m.recalled_at is not None:
        text = ""
    elif m.msg_type == Message.Type.SYSTEM:
        text = message_text({"code": m.code, "params": m.params, "content": m.content})
    else:
        text = m.content or (m.attachment.name if m.attachment_id else "")
    return {
        "seq": m.seq,
        "created_at": m.created_at.isoformat(),
        "sender": m.sender_name or m.sender_key,
        "sender_type": m.sender_type,
        "type": m.msg_type,
        "text": text,
        "internal": m.internal,
        "recalled": m.recalled_at is not None,
        "conversation_id": m.conversation_id,
    }


def _sessions() -> QuerySet[Session]:
    return Session.objects.select_related("visitor", "channel", "workgroup", "agent")


def conversation_export(*, user: User, conversation_id: object) -> dict[str, Any]:
    """``{"conversation": {conversation_id, visitor {id, name, email, phone, timezone},
    channel, workgroup, agent, status, created_at, first_response_at, closed_at, csat_score,
    merged_from [conversation ids]}, "messages": [{seq, created_at, sender, sender_type, type,
    text, internal, recalled, conversation_id}]}`` of a customer conversation and those merged
    into it (:mod:`kefu.services.merge`), messages in the order they were written (system lines
    in the reader's language, at most :data:`MAX_MESSAGES`), recorded in the audit log.

    Who: an agent in the conversation, or a supervisor of its workgroup (administrators and
    auditors: any; :mod:`kefu.supervision`).
    Raises ``ServiceError("not_found")`` for anyone else, a former participant, another
    tenant's conversation or one that is not a customer conversation."""
    conversation_id = parsing.positive_int(conversation_id, "conversation_id")
    session = _sessions().filter(conversation_id=conversation_id).first()
    scope = supervision.supervised_workgroup_ids(user)
    if session is None or not (scope is None or session.workgroup_id in scope):
        im_selectors.participant_get(conversation_id=conversation_id, member_key=user.member_key)
    if session is None:
        raise ServiceError("not_found", _("No such conversation."), field="conversation_id")
    # with the conversations merged into it, in the order the messages were written
    ids = merged_conversation_ids(conversation_id=conversation_id)
    messages = (
        Message.objects.filter(conversation_id__in=ids)
        .exclude(msg_type=Message.Type.RECALL)
        .select_related("attachment")
        .order_by("created_at", "conversation_id", "seq")[:MAX_MESSAGES]
    )
    audit.audit_record(
        actor=user,
        action=audit.EXPORT,
        target=session,
        data={"report": "conversation", "conversation_id": conversation_id},
    )
    info = {**_session_info(session), "merged_from": [i for i in ids if i != conversation_id]}
    return {"conversation": info, "messages": [_message_row(m) for m in messages]}


MESSAGE_COLUMNS = (
    "seq",
    "created_at",
    "sender",
    "sender_type",
    "type",
    "text",
    "internal",
    "conversation_id",
)


def conversation_csv(data: dict[str, Any]) -> list[list[Any]]:
    """The rows (header first) of one conversation's CSV: one row per message."""
    rows: list[list[Any]] = [list(MESSAGE_COLUMNS)]
    rows.extend([_cell(m[c]) for c in MESSAGE_COLUMNS] for m in data["messages"])
    return rows


def conversation_json(data: dict[str, Any]) -> str:
    """One conversation's export as JSON text (UTF-8, Chinese kept as is)."""
    return json.dumps(data, ensure_ascii=False, indent=1)


# --- a filtered list, by a worker ---------------------------------------------------------------

FILTER_KEYS = (
    "status",
    "start",
    "end",
    "workgroup_id",
    "agent_id",
    "q",
    "conversation_ids",
    "view",
    "label",
    "channel",
    "attribute",
)


def _filters(value: object) -> dict[str, Any]:
    """Validated list filters: ``status`` (robot|queued|open|closed), ``start``/``end`` (local
    dates, YYYY-MM-DD, on ``created_at``), ``workgroup_id``, ``agent_id``, ``q`` (the visitor's
    name, e-mail or phone contains), ``conversation_ids`` (those conversations only: the back
    office's selection); and the inbox's list as the requester sees it: ``view`` (one of
    ``kefu.inbox_views.VIEWS``, within the requester's scope), ``label``, ``channel`` (ids)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ServiceError("invalid", _("filters must be an object."), field="filters")
    unknown = set(value) - set(FILTER_KEYS)
    if unknown:
        raise ServiceError("invalid", _("Unknown filter."), field=sorted(unknown)[0])
    out: dict[str, Any] = {}
    if value.get("status") not in (None, ""):
        out["status"] = parsing.choice(value["status"], "status", Session.Status)
    for key in ("start", "end"):
        if value.get(key) not in (None, ""):
            try:
                out[key] = dt.date.fromisoformat(str(value[key])).isoformat()
            except ValueError as exc:
                raise ServiceError("invalid", _("Use a date as YYYY-MM-DD."), field=key) from exc
    if "start" in out and "end" in out and out["start"] > out["end"]:
        raise ServiceError("invalid", _("The start is after the end."), field="start")
    for key in ("workgroup_id", "agent_id"):
        if value.get(key) not in (None, ""):
            out[key] = parsing.positive_int(value[key], key)
    if value.get("q") not in (None, ""):
        out["q"] = parsing.text(value["q"], "q", 100)
    if value.get("conversation_ids") is not None:
        out["conversation_ids"] = _ids(value["conversation_ids"])
    return {**out, **_inbox_filters(value)}


def _inbox_filters(value: dict[str, Any]) -> dict[str, Any]:
    """The filters of the inbox's list: ``view``, ``label``, ``channel``, ``attribute``
    (``key=value``, kefu.services.attributes)."""
    out: dict[str, Any] = {}
    if value.get("attribute") not in (None, ""):
        parsed = attributes.attribute_filter_parse(value["attribute"])
        out["attribute"] = f"{parsed[0]}={parsed[1]}" if parsed else None
    if value.get("view") not in (None, ""):
        if value["view"] not in inbox_views.VIEWS:
            raise ServiceError("invalid", _("Unknown view."), field="view")
        out["view"] = value["view"]
    for key in ("label", "channel"):
        if value.get(key) not in (None, ""):
            out[key] = parsing.positive_int(value[key], key)
    return out


def _ids(ids: object) -> list[int]:
    if not isinstance(ids, list) or not ids or len(ids) > MAX_CONVERSATIONS:
        raise ServiceError(
            "invalid", _("conversation_ids must be a list of ids."), field="conversation_ids"
        )
    return sorted({parsing.positive_int(i, "conversation_ids") for i in ids})


def _date(value: object, field: str) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError as exc:
        raise ServiceError("invalid", _("Use a date as YYYY-MM-DD."), field=field) from exc


def _filtered(filters: dict[str, Any], user: User) -> QuerySet[Session]:
    rows = _sessions()
    if "view" in filters:
        # the inbox's view as ``user`` sees it (their scope), whoever else could see more
        view = inbox_views.filters_clean({"view": filters["view"]})
        rows = rows.filter(pk__in=inbox_views.sessions_for_view(user=user, filters=view))
    if "label" in filters:
        rows = rows.filter(labels=filters["label"])
    if "channel" in filters:
        rows = rows.filter(channel_id=filters["channel"])
    if filters.get("attribute"):
        rows = rows.filter(attributes.attribute_q(filters["attribute"]))
    if "status" in filters:
        rows = rows.filter(status=filters["status"])
    if "start" in filters:
        rows = rows.filter(created_at__date__gte=filters["start"])
    if "end" in filters:
        rows = rows.filter(created_at__date__lte=filters["end"])
    if "workgroup_id" in filters:
        rows = rows.filter(workgroup_id=filters["workgroup_id"])
    if "workgroup_ids" in filters:
        rows = rows.filter(workgroup_id__in=filters["workgroup_ids"])
    if "agent_id" in filters:
        rows = rows.filter(agent_id=filters["agent_id"])
    if "conversation_ids" in filters:
        rows = rows.filter(conversation_id__in=filters["conversation_ids"])
    if "q" in filters:
        q = filters["q"]
        rows = rows.filter(
            Q(visitor__name__icontains=q)
            | Q(visitor__email__icontains=q)
            | Q(visitor__phone__icontains=q)
        )
    return rows.order_by("created_at", "pk")


def export_job_create(*, user: User, fmt: object, filters: object) -> ExportJob:
    """Queue the export of the customer conversations matching ``filters`` (see
    :func:`_filters`) as ``fmt`` (``csv``: one row per conversation; ``json``: each conversation
    with its messages). Supervisors export any list of their workgroups' conversations; other
    agents only an inbox view (a ``view`` filter: what their list shows them), ``forbidden``
    otherwise. ``invalid`` for a bad format or filter, or more than :data:`MAX_CONVERSATIONS`
    matching. The worker's task is queued after commit; the export is recorded in the audit
    log."""
    fmt = parsing.choice(fmt, "format", ExportJob.Format)
    clean = _filters(filters)
    supervisor = monitor.is_supervisor(user)
    if not supervisor and not ("view" in clean and user.is_agent):
        raise ServiceError("forbidden", _("Only supervisors can export conversation lists."))
    if supervisor:
        scope = supervision.supervised_workgroup_ids(user)
        if scope is not None:  # a supervisor exports their workgroups' conversations only
            clean["workgroup_ids"] = sorted(scope)
    total = _filtered(clean, user).count()
    if total > MAX_CONVERSATIONS:
        raise ServiceError(
            "invalid",
            _("At most %(n)d conversations can be exported at once; narrow the filters.")
            % {"n": MAX_CONVERSATIONS},
            field="filters",
        )
    with transaction.atomic():
        job = ExportJob.objects.create(requester=user, format=fmt, filters=clean, total=total)
        audit.audit_record(
            actor=user,
            action=audit.EXPORT,
            target=job,
            data={"report": "conversations", "format": fmt, "filters": clean},
        )
        schema = connection.schema_name
        transaction.on_commit(lambda: export_job_task.delay(schema, job.pk))
    return job


def export_job_payload(job: ExportJob) -> dict[str, Any]:
    """``{"id", "format", "filters", "state" (queued|running|done|failed), "total", "done",
    "progress" (0-100), "error", "created_at", "finished_at", "download_url" (when done)}``."""
    progress = 100 if job.state == ExportJob.State.DONE else 0
    if job.total and job.state != ExportJob.State.DONE:
        progress = min(99, job.done * 100 // job.total)
    return {
        "id": job.pk,
        "format": job.format,
        "filters": job.filters,
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "progress": progress,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "finished_at": _iso(job.finished_at),
        "download_url": (
            f"/api/v1/kefu/exports/{job.pk}/download" if job.state == ExportJob.State.DONE else None
        ),
    }


def export_job_get(*, user: User, job_id: object) -> ExportJob:
    """The caller's own export (``not_found`` for another's or another tenant's)."""
    job = (
        ExportJob.objects.defer("content")
        .filter(pk=parsing.positive_int(job_id, "id"), requester=user)
        .first()
    )
    if job is None:
        raise ServiceError("not_found", _("No such export."))
    return job


def export_job_file(*, user: User, job_id: object) -> tuple[bytes, str, str]:
    """``(content, content type, file name)`` of the caller's finished export; ``not_found``
    for another's, ``conflict`` while it is not done."""
    job = export_job_get(user=user, job_id=job_id)
    if job.state != ExportJob.State.DONE:
        raise ServiceError("conflict", _("The export is not ready yet."))
    content = ExportJob.objects.values_list("content", flat=True).get(pk=job.pk)
    kind = "text/csv; charset=utf-8" if job.format == "csv" else "application/json"
    return bytes(content or b""), kind, f"conversations-{job.pk}.{job.format}"


def exports_purge(*, now: dt.datetime | None = None) -> int:
    """Delete this tenant's list exports created more than ``WEIYU_EXPORTS_KEEP_DAYS`` (7) days
    before ``now``, files included (a daily beat, ``kefu.tasks.exports_purge_task``); their
    links then answer 404. Exports still queued or running are kept. Returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.WEIYU_EXPORTS_KEEP_DAYS)
    deleted, _by_model = (
        ExportJob.objects.filter(created_at__lt=cutoff)
        .exclude(state__in=[ExportJob.State.QUEUED, ExportJob.State.RUNNING])
        .delete()
    )
    return deleted


LIST_COLUMNS = (
    "conversation_id",
    "created_at",
    "status",
    "visitor",
    "email",
    "phone",
    "channel",
    "workgroup",
    "agent",
    "first_response_at",
    "closed_at",
    "csat_score",
    "messages",
)


def export_job_run(*, job_id: int) -> ExportJob:
    """Write an export (the worker): the matching conversations in batches of :data:`BATCH`,
    ``done`` moved after each. Idempotent: a job already done is left alone; a redelivered job
    starts over. A failure is stored as ``failed`` with its error."""
    job = ExportJob.objects.defer("content").get(pk=job_id)
    if job.state == ExportJob.State.DONE:
        return job
    ExportJob.objects.filter(pk=job.pk).update(state=ExportJob.State.RUNNING, done=0)
    try:
        content = _write(job)
    except Exception as exc:  # stored for the requester, then re-raised
        ExportJob.objects.filter(pk=job.pk).update(
            state=ExportJob.State.FAILED, error=str(exc)[:200], finished_at=timezone.now()
        )
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.DONE, content=content, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _write(job: ExportJob) -> bytes:
    sessions = list(_filtered(job.filters, job.requester)[:MAX_CONVERSATIONS])
    ExportJob.objects.filter(pk=job.pk).update(total=len(sessions))
    out = io.StringIO()
    writer = csv.writer(out)
    conversations: list[dict[str, Any]] = []
    if job.format == ExportJob.Format.CSV:
        out.write("\ufeff")
        writer.writerow(LIST_COLUMNS)
    for start in range(0, len(sessions), BATCH):
        batch = sessions[start : start + BATCH]
        ids = [s.conversation_id for s in batch]
        if job.format == ExportJob.Format.CSV:
            counts = dict(
                Message.objects.filter(conversation_id__in=ids)
                .exclude(msg_type__in=(Message.Type.SYSTEM, Message.Type.RECALL))
                .values_list("conversation_id")
                .annotate(n=Count("id"))
                .values_list("conversation_id", "n")
            )
            for s in batch:
                info = _session_info(s)
                writer.writerow(
                    [
                        _cell(v)
                        for v in (
                            s.conversation_id,
                            info["created_at"],
                            s.status,
                            s.visitor.name,
                            s.visitor.email,
                            s.visitor.phone,
                            info["channel"],
                            info["workgroup"],
                            info["agent"] or "",
                            info["first_response_at"] or "",
                            info["closed_at"] or "",
                            s.csat_score if s.csat_score is not None else "",
                            counts.get(s.conversation_id, 0),
                        )
                    ]
                )
        else:
            by_conversation: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            for m in (
                Message.objects.filter(conversation_id__in=ids)
                .exclude(msg_type=Message.Type.RECALL)
                .select_related("attachment")
                .order_by("conversation_id", "seq")
            ):
                by_conversation[m.conversation_id].append(_message_row(m))
            conversations.extend(
                {**_session_info(s), "messages": by_conversation[s.conversation_id]} for s in batch
            )
        ExportJob.objects.filter(pk=job.pk).update(done=start + len(batch))
    if job.format == ExportJob.Format.CSV:
        return out.getvalue().encode("utf-8")
    body = {"filters": job.filters, "conversations": conversations}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


@shared_task(name="kefu.tasks.export_job_task", acks_late=True)
def export_job_task(schema: str, job_id: int) -> None:
    """Worker: write one tenant's export (:func:`export_job_run`)."""
    with schema_context(schema):
        export_job_run(job_id=job_id)
