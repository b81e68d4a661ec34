"""Several machines on loopback (docs/deploy.md): three web processes and two channel-layer Redis
shards behind a balancer carry visitor chats; one web process is SIGKILLed and one shard is
killed and started again (empty) mid-run. No acknowledged message is lost or stored twice, every
dropped client reconnects and resynchronises, and nothing reaches the wrong agent.

The harness is bench/cluster.py's (its ``run_cluster``), at small sizes, on the test database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from bench.cluster import Shape, run_cluster
from tests.conftest import make_desk, session_cookie, unique
from tests.servers import ROOT, database_url
from tests.waits import WAIT_S

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _environment() -> dict[str, str]:
    """What tests/servers.py gives its daphnes, with a channel prefix of this test's own."""
    env = {
        **os.environ,
        "WEIYU_SEMANTIC": "off",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "weiyu.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "CHANNEL_PREFIX": unique(f"{settings.REDIS_KEY_PREFIX}cl"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    return env


def test_a_web_process_and_a_shard_die_and_no_acked_message_is_lost(acme, tmp_path: Path):
    # given: 4 agents of one desk, 20 visitors, 3 web processes, 2 shards, a balancer
    desk = make_desk(acme, agents=4, cap=10)
    cookies = [session_cookie(acme, agent).decode() for agent in desk.agents]
    shape = Shape(
        visitors=20,
        agents=4,
        messages=15,
        interval_ms=(200.0, 600.0),
        worker=False,
        shard_down_s=2.0,
        grace_s=WAIT_S / 3,
        timeout_s=WAIT_S * 3,
    )

    # when: every visitor chats, and web process 2 and shard 2 are killed mid-run
    result = asyncio.run(
        run_cluster(
            shape=shape,
            env=_environment(),
            host="acme.localhost",
            channel=desk.channel.public_key,
            cookies=cookies,
            faults=True,
            logdir=tmp_path,
            log=lambda _line: None,
        )
    )

    # then: every message was acked in the end (the clients resent what had no ack) ...
    assert not result.get("timed_out"), result
    assert result["visitors_opened"] == 20, result
    assert result["sent"] == 20 * 15
    assert result["acked"] == result["sent"], result
    # ... no acked message is lost or stored twice, none reached another agent
    assert result["acked_then_lost"] == 0, result
    assert result["stored_twice"] == 0, result
    assert result["repeated_frames"] == 0, result
    assert result["misrouted"] == 0, result
    # and both kills dropped clients, every one of which reconnected and synced again
    causes = result["resume_by_cause"]
    assert causes["web process killed"]["clients"] >= 1, result
    assert causes["shard lost"]["clients"] >= 1, result
    assert result["not_resumed"] == 0, result


def _hosts_with(urls: str) -> subprocess.CompletedProcess[str]:
    code = (
        "from weiyu import settings; "
        "print([h['address'] for h in settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**_environment(), "CHANNEL_REDIS_URLS": urls},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def test_channel_redis_urls_list_the_shards_in_order():
    # a list, spaces allowed, order kept (the position decides where a group lives)
    done = _hosts_with("redis://r2:6379/0, redis://r1:6379/0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['redis://r2:6379/0', 'redis://r1:6379/0']"
    # unset: the one REDIS_URL
    done = _hosts_with("")
    assert done.stdout.strip() == repr([settings.REDIS_URL])
    # something else than a Redis URL is refused at start, naming it
    done = _hosts_with("redis://r1:6379/0,r2:6379")
    assert done.returncode != 0
    assert "CHANNEL_REDIS_URLS takes comma-separated redis://" in done.stderr
    assert "'r2:6379'" in done.stderr
