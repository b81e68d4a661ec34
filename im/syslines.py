"""System lines stored as a code and parameters, rendered in each reader's language.

An automatic line ("Carol is now serving you.", "Ann invited Bob, Li") is stored with a ``code``
(``kefu.assigned``) and its ``params`` (``{"agent": "Carol"}``) beside ``content``, which holds
the line rendered in the tenant's default language (``settings.LANGUAGE_CODE``) for clients,
search and exports that do not know the code. Readers render the code in their own language:
the inbox and the widget from their JavaScript catalogue (static/weiyu/syslines.js holds the same
codes and texts; a test keeps the two in step), the server with :func:`system_line_render` where
it writes for a reader (e-mailed transcripts, the admin, the supervisors' monitor).

Each app registers the lines it posts (:func:`system_lines_register`): ``im`` its group lines
here, ``kefu`` its service lines in ``kefu/syslines.py``. A code is never reused for another
meaning, since stored messages keep it; a line that changes meaning gets a new code.

Parameters are strings or integers, or lists of strings (names), which render joined with the
reader's list separator (", " / "、").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_noop as _

#: code -> the line's untranslated text (a format with %(name)s parameters)
_LINES: dict[str, str] = {}

#: the list separator of names in a line (translated: "、" in Chinese)
LIST_SEPARATOR = _(", ")


def system_lines_register(lines: dict[str, str]) -> None:
    """Add ``{code: gettext_noop(text)}`` to the known lines. A code registered twice with a
    different text raises ``ValueError`` (stored messages would change meaning)."""
    for code, text in lines.items():
        if _LINES.get(code, text) != text:
            raise ValueError(f"system line {code!r} is already registered with another text")
        _LINES[code] = text


def system_lines() -> dict[str, str]:
    """Every registered code with its untranslated text (``{code: msgid}``)."""
    return dict(_LINES)


def _format(code: str, params: dict[str, Any]) -> str | None:
    text = _LINES.get(code)
    if text is None:
        return None
    values = {
        key: gettext(LIST_SEPARATOR).join(str(v) for v in value)
        if isinstance(value, list)
        else value
        for key, value in params.items()
    }
    try:
        return gettext(text) % values
    except (KeyError, TypeError, ValueError):
        return None


def system_line_render(code: str, params: dict[str, Any], *, language: str | None = None) -> str:
    """The line ``code`` with ``params`` in ``language`` (default: the active one). Raises
    ``KeyError`` for an unknown code or missing parameter (a programming error at the poster)."""
    with translation.override(language or translation.get_language()):
        text = _format(code, params)
    if text is None:
        raise KeyError(f"system line {code!r} with {sorted(params)}")
    return text


def system_line_default(code: str, params: dict[str, Any]) -> str:
    """The line in the tenant's default language: what ``Message.content`` stores."""
    return system_line_render(code, params, language=settings.LANGUAGE_CODE)


def message_text(message: Any, *, language: str | None = None) -> str:
    """What a reader in ``language`` (default: the active one) reads for ``message`` (an
    ``im.Message`` or its payload dict): its system line rendered from ``code``/``params`` when
    the code is known, else its stored ``content`` (messages written before codes existed, lines
    without a code such as a tenant's own closing text, and every other message)."""
    if isinstance(message, dict):
        code, params, content = (
            message.get("code") or "",
            message.get("params") or {},
            message.get("content") or "",
        )
    else:
        code, params, content = message.code, message.params or {}, message.content
    if not code:
        return content
    with translation.override(language or translation.get_language()):
        text = _format(code, params)
    return content if text is None else text


system_lines_register(
    {
        "group.created": _("%(actor)s created the group %(title)s"),
        "group.renamed": _("%(actor)s renamed the group to %(title)s"),
        "group.announcement": _("%(actor)s updated the announcement: %(text)s"),
        "group.announcement_removed": _("%(actor)s removed the announcement"),
        "group.avatar": _("%(actor)s changed the group picture"),
        "group.all_muted": _("%(actor)s muted everyone"),
        "group.all_unmuted": _("%(actor)s unmuted everyone"),
        "group.dissolved": _("%(actor)s dissolved the group"),
        "group.invited": _("%(actor)s invited %(names)s"),
        "group.left": _("%(name)s left the group"),
        "group.removed": _("%(actor)s removed %(name)s"),
        "group.admin": _("%(actor)s made %(name)s an admin"),
        "group.member": _("%(actor)s made %(name)s a member"),
        "group.muted": _("%(actor)s muted %(name)s for %(minutes)d minutes"),
        "group.unmuted": _("%(actor)s unmuted %(name)s"),
        "group.owner": _("%(actor)s made %(name)s the group owner"),
    }
)
