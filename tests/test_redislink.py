"""The channel layer's own Redis connection (weiyu/redislink.py) against a real Redis: replies
reach their callers in order however many share the socket, error replies are redis-py's
errors, a Redis that restarts is reconnected to on the next call, and a Redis that does not
answer fails the waiting calls instead of leaving them waiting."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.conftest import unique
from tests.servers import PrivateRedis, free_port
from tests.waits import WAIT_S
from weiyu.redislink import RedisLink, link_for_host


def _link() -> RedisLink:
    link = link_for_host(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
    assert link is not None
    return link


@pytest.mark.asyncio
async def test_many_callers_share_one_socket_and_each_gets_its_own_reply():
    link = _link()
    key = unique("link")
    try:
        # when 300 commands are sent at once on one link
        replies = await asyncio.gather(*(link.call("RPUSH", key, n) for n in range(300)))
        # then each caller got the reply to its own command, and Redis saw them in order
        assert sorted(replies) == list(range(1, 301))
        assert await link.call("LRANGE", key, 0, -1) == [str(n).encode() for n in range(300)]
        assert await link.call("ZPOPMIN", key + "z", 10) == []
        assert await link.call("GET", key + "missing") is None
    finally:
        await link.call("DEL", key)
        link.close()


@pytest.mark.asyncio
async def test_error_replies_are_redis_py_errors_and_the_socket_stays_usable():
    link = _link()
    try:
        with pytest.raises(NoScriptError):
            await link.call("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await link.call("NOSUCHCOMMAND")
        assert await link.call("EVAL", "return ARGV[1]", 0, "你好") == "你好".encode()
    finally:
        link.close()


@pytest.mark.asyncio
async def test_a_caller_that_gives_up_does_not_take_the_next_callers_reply():
    link = _link()
    key = unique("link")
    try:
        # given a command whose caller is cancelled before its reply comes (it blocks in Redis)
        assert await link.call("PING") == b"PONG"
        blocked = asyncio.ensure_future(link.call("BLPOP", key, 1, block=1))
        await asyncio.sleep(0)
        blocked.cancel()
        # when the next command goes on the same socket, then it gets its own reply
        assert await asyncio.wait_for(link.call("ECHO", "mine"), WAIT_S) == b"mine"
    finally:
        link.close()


@pytest.mark.asyncio
async def test_a_restarted_redis_is_reconnected_to_and_a_dead_one_fails_the_call(tmp_path):
    server = PrivateRedis(port=free_port(), workdir=tmp_path / "r")
    server.start()
    link = link_for_host({"address": f"redis://127.0.0.1:{server.port}/3", "socket_timeout": 15})
    try:
        assert await link.call("SET", "k", "v") is not None
        # the database of the URL was selected
        assert b" db=3 " in await link.call("CLIENT", "INFO")
        # when Redis dies, a call fails with redis-py's ConnectionError
        server.stop()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(link.call("PING"), WAIT_S)
        # and once it is back, the next call reconnects on its own
        server.start()
        assert await asyncio.wait_for(link.call("PING"), WAIT_S) == b"PONG"
    finally:
        link.close()
        server.stop()


@pytest.mark.asyncio
async def test_a_redis_that_does_not_answer_fails_the_waiting_calls():
    # given a server that accepts the connection and never answers
    async def silent(reader, writer):
        await reader.read(-1)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = RedisLink(host="127.0.0.1", port=port, timeout=0.5)
    try:
        # then every call on its way fails with redis-py's TimeoutError, none waits for ever
        calls = [asyncio.ensure_future(link.call("PING")) for _ in range(3)]
        for call in calls:
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(call, WAIT_S)
    finally:
        link.close()
        server.close()


def test_only_plain_addresses_get_a_link():
    assert link_for_host({"address": "redis://127.0.0.1:6379/2"}).db == 2
    assert (
        link_for_host({"address": "unix:///run/weiyu/redis.sock?db=1"}).path
        == "/run/weiyu/redis.sock"
    )
    assert link_for_host({"address": "rediss://127.0.0.1:6380/0"}) is None
    assert link_for_host(("127.0.0.1", 6379)) is None
