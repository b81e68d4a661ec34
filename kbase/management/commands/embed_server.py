"""``manage.py embed_server``: the embedding service (the Procfile's ``embed`` process).

Loads the sentence model once and answers the query vectors of knowledge-base searches over Redis
(:mod:`kbase.embed_service`), so web processes never load torch. Stops on SIGTERM/SIGINT within
about a second. When semantic search is not installed (or ``WEIYU_SEMANTIC=off``) it says so and
idles until stopped, so a process manager that stops everything when one process exits (honcho)
keeps running; searches are then keyword-only.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kbase import embed_service, embeddings


class Command(BaseCommand):
    help = "Serve query vectors for semantic knowledge-base search (keeps the model out of web)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threads",
            type=int,
            default=0,
            help="torch threads for encoding (default: WEIYU_TORCH_THREADS, else 1)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if not embeddings.available():
            self.stdout.write(
                "embed_server: semantic search is not available here (requirements-semantic.txt "
                "not installed, or WEIYU_SEMANTIC=off); idling, searches use keywords only",
                ending="\n",
            )
            self.stdout.flush()
            while not stop.wait(1.0):  # a bare wait() would not see the signal handler run
                pass
            return
        if opts["threads"]:
            os.environ["WEIYU_TORCH_THREADS"] = str(opts["threads"])
        ready = threading.Event()

        def announce() -> None:
            if ready.wait() and not stop.is_set():
                self.stdout.write("embed_server: ready", ending="\n")
                self.stdout.flush()

        threading.Thread(target=announce, daemon=True).start()
        embed_service.serve(stop=stop, ready=ready)
        ready.set()
