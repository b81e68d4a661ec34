"""Settings of ``bench/migrate_schemas.py`` and the ``migrate_schemas`` runs it starts: the
product's, plus the bench-only tenant app ``migprobe`` whose migrations live in the directory
named by ``WEIYU_MIGBENCH_DIR`` (the bench writes them there; the product never sees them)."""

import os
import sys

from weiyu.settings import *  # noqa: F403 - the product's settings, extended below
from weiyu.settings import INSTALLED_APPS, TENANT_APPS

sys.path.insert(0, os.environ["WEIYU_MIGBENCH_DIR"])
TENANT_APPS = [*TENANT_APPS, "migprobe"]
INSTALLED_APPS = [*INSTALLED_APPS, "migprobe"]
MIGRATION_MODULES = {"migprobe": "migprobe_migrations"}
# the multiprocessing executor's processes: one per CPU
TENANT_MULTIPROCESSING_MAX_PROCESSES = os.cpu_count() or 2
