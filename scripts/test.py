"""Start embedded services when the environment names none, then run pytest."""

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WEIYU_DATA_DIR", str(ROOT / ".data" / "test"))
os.environ.setdefault("CHANNEL_PREFIX", f"weiyutest{os.getpid()}")
# the suite creates hundreds of users; a cheap hash keeps that fast (servers it starts inherit it)
os.environ.setdefault("WEIYU_FAST_PASSWORD_HASHER", "1")
# the suite makes hundreds of visitors from one address (127.0.0.1): the anonymous rate limits
# are off, and tests/security/test_rate_limits.py turns them on where it floods them
os.environ.setdefault("WEIYU_RATE_LIMITS", "off")

from weiyu import devservices

devservices.start()

import pytest

code = pytest.main(sys.argv[1:])
# The embedded services stop at exit and log it, but pytest has closed the streams that Django's
# logging configuration holds by then.
logging.raiseExceptions = False
logging.getLogger().handlers.clear()
logging.getLogger("pgserver").setLevel(logging.WARNING)
sys.exit(code)
