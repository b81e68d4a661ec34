"""The name a process gives its PostgreSQL connections (``application_name``), by process kind.

``pg_stat_activity.application_name`` then tells an operator which processes hold the server's
connections (docs/deploy.md, "Database connections"), e.g.::

    SELECT application_name, state, count(*) FROM pg_stat_activity
    WHERE datname = current_database() GROUP BY 1, 2 ORDER BY 1, 2;

Imported by the settings, so it imports nothing of Django's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: PostgreSQL keeps the first NAMEDATALEN - 1 bytes of an application_name
MAX_LENGTH = 63
#: environment variable naming the web child (1…N) that ``python -m weiyu.serve`` started
WEB_CHILD_ENV = "WEIYU_WEB_CHILD"


def process_kind(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """What this process is, from its command line: ``web-<i>`` (the i-th daphne of the
    launcher, ``WEIYU_WEB_CHILD``), ``web`` (a daphne or uvicorn started otherwise), ``worker``
    and ``beat`` (celery), ``embed`` (``manage.py embed_server``), ``manage-<command>`` (any other
    management command), ``test`` (pytest), else the script's name (``chat_load``)."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    script = Path(argv[0]).name if argv else ""
    if script == "__main__.py":  # python -m <package>
        script = Path(argv[0]).parent.name
    script = script.removesuffix(".py")
    if script in {"daphne", "uvicorn"}:
        child = environ.get(WEB_CHILD_ENV, "")
        return f"web-{child}" if child else "web"
    if script == "celery":
        for word in argv[1:]:
            if word in {"worker", "beat"}:
                return word
        return "celery"
    if script in {"manage", "django-admin"}:
        command = next((a for a in argv[1:] if not a.startswith("-")), "")
        return "embed" if command == "embed_server" else f"manage-{command}".rstrip("-")
    if script in {"pytest", "py.test", "test"}:
        return "test"
    return script or "python"


def application_name(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """``$WEIYU_DB_APPLICATION_NAME`` when set, else ``weiyu-`` + :func:`process_kind`; at most
    :data:`MAX_LENGTH` characters."""
    environ = os.environ if environ is None else environ
    name = environ.get("WEIYU_DB_APPLICATION_NAME", "").strip()
    if not name:
        name = f"weiyu-{process_kind(argv, environ)}"
    return name[:MAX_LENGTH]
