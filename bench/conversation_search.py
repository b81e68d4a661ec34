#!/usr/bin/env python
"""Conversation search benchmark (KF-13): p50/p99 of ``kefu.search.conversation_search`` over
1,000,000 messages of one tenant, against the plain ``ILIKE`` scan of the same run.

    .venv/bin/python bench/conversation_search.py [--messages 1000000] [--runs 20] [--json]

1. Generates, once per size, in the tenant ``bench_search`` (``$DATABASE_URL``, default
   ``…/weiyu_bench``): ``--messages`` messages in conversations of 20 (mixed Chinese and
   English sentences from a vocabulary, each customer line with an order number of its own), one
   visitor and one session per conversation spread over a year, served by ten agents. Rows go in
   with ``INSERT … SELECT generate_series`` (the tsvector of each distinct sentence is computed
   once with :func:`im.search.index_terms`, the same terms the send path stores); the message
   GIN index is dropped during the load and built again after.
2. The searcher is a participant of every conversation (a supervisor serving everything: the
   most rows any agent can search). Query kinds: a common Chinese word, a Chinese phrase, an
   English word, two English words, a unique order number, a customer name, a customer e-mail,
   a word found nowhere, and a common word with two filters. Each kind runs ``--runs`` times;
   each run times the search (both its queries, ORM included) and then the baseline: the same
   visibility and ordering with ``content ILIKE '%q%'`` / ``name ILIKE`` / ``email ILIKE``.
3. Prints p50/p99 per kind and overall, beside the baseline's, and how many runs returned the
   same first page as the baseline (queries whose semantics coincide: one word or phrase).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_load import ROOT, _ensure_database, bench_env, bench_tenant, pct  # bench/ is no package

SCHEMA = "bench_search"
PER_CONVERSATION = 20
AGENTS = 10
ZH = [
    "我想申请退款", "订单什么时候发货", "快递还没有到", "请问可以开发票吗", "商品有质量问题",
    "怎么修改收货地址", "优惠券不能用", "会员积分怎么算", "支付失败了", "能不能换货",
    "客服你好", "谢谢你的帮助", "麻烦尽快处理", "包装破损了", "尺码不合适",
    "物流信息一直没更新", "申请售后", "价格保护", "预售什么时候结束", "发票抬头写错了",
]  # fmt: skip
EN = [
    "refund", "order", "shipping", "delivery", "invoice", "tracking number", "coupon",
    "password reset", "account locked", "payment failed", "exchange", "warranty", "discount",
    "subscription", "cancel my plan", "broken screen", "wrong size", "late parcel", "thanks",
    "hello there",
]  # fmt: skip
SURNAMES = ["王", "李", "张", "刘", "陈", "Smith", "Garcia", "Miller", "Chen", "Kim"]
QUERIES = {
    "zh word": ("退款", {}),
    "zh phrase": ("物流信息", {}),
    "en word": ("refund", {}),
    "en two words": ("tracking number", {}),
    "order number": ("#{order}", {}),
    "customer name": ("{name}", {}),
    "customer e-mail": ("{email}", {}),
    "no match": ("zzqxj", {}),
    "word + filters": ("coupon", {"status": "closed", "csat_max": 2}),
}


def _texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        parts = rng.sample(ZH, rng.randint(0, 2)) + rng.sample(EN, rng.randint(0, 2))
        if not parts:
            parts = [rng.choice(ZH)]
        rng.shuffle(parts)
        out.append("，".join(parts) if rng.random() < 0.5 else " ".join(parts))
    return out


def generate(messages: int) -> dict[str, int]:
    """Fill the tenant (once per size); return ``{"searcher", "conversations", "messages"}``."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from im.search import index_terms
    from kefu.models import Channel, Workgroup
    from org.models import User

    bench_tenant(
        schema=SCHEMA, domain="bench-search.localhost", name="Bench search",
        admin="bench_search_admin",
    )  # fmt: skip
    conversations = messages // PER_CONVERSATION
    with schema_context(SCHEMA), connection.cursor() as cur:
        agents = []
        for i in range(AGENTS):
            user = User.objects.filter(username=f"bench_searcher{i}").first()
            if user is None:
                user = User.objects.create_user(
                    username=f"bench_searcher{i}", password=os.urandom(8).hex(), role="agent",
                    display_name=f"Searcher {i}",
                )  # fmt: skip
            agents.append(user.pk)
        cur.execute("SELECT count(*) FROM im_message")
        have = cur.fetchone()[0]
        if have == messages:
            return {"searcher": agents[0], "conversations": conversations, "messages": messages}
        print(f"generating {messages:,} messages in {conversations:,} conversations…", flush=True)
        t0 = time.perf_counter()
        for table in ("kefu_session", "im_participant", "im_message", "im_conversation"):
            cur.execute(f"TRUNCATE {table} CASCADE")
        cur.execute("TRUNCATE kefu_visitor CASCADE")
        workgroup, _ = Workgroup.objects.get_or_create(name="Bench")
        channel, _ = Channel.objects.get_or_create(name="Bench web", workgroup=workgroup)
        rng = random.Random(17)
        texts = _texts(rng, 4000)
        cur.execute("CREATE TEMP TABLE bench_text (i int PRIMARY KEY, content text, vec tsvector)")
        cur.executemany(
            "INSERT INTO bench_text VALUES (%s, %s, to_tsvector('simple', %s))",
            [(i, t, index_terms(t)) for i, t in enumerate(texts)],
        )
        cur.execute("CREATE TEMP TABLE bench_agent (i int PRIMARY KEY, id bigint)")
        cur.executemany("INSERT INTO bench_agent VALUES (%s, %s)", list(enumerate(agents)))
        cur.execute("DROP INDEX IF EXISTS im_message_search")
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute(
            """
            INSERT INTO kefu_visitor (id, name, user_agent, language, referrer, page_url,
                created_at, last_seen_at, channel_id, email, name_given, phone)
            SELECT g, (%(surnames)s::text[])[1 + g %% %(k)s] || '客户' || g, '', 'zh-hans', '',
                '', now() - interval '365 days' + g * interval '1 minute' * 365 * 24 * 60 / %(n)s,
                now() - interval '365 days' + g * interval '1 minute' * 365 * 24 * 60 / %(n)s, %(channel)s,
                CASE WHEN g %% 2 = 0 THEN 'user' || g || '@example.com' ELSE '' END, true,
                CASE WHEN g %% 3 = 0 THEN '+86 138 ' || lpad(g::text, 8, '0') ELSE '' END
            FROM generate_series(1, %(n)s) g
            """,
            {"n": conversations, "channel": channel.pk, "surnames": SURNAMES, "k": len(SURNAMES)},
        )
        cur.execute(
            """
            INSERT INTO im_conversation (id, kind, title, last_seq, last_message_at, created_at,
                closed_at, all_muted, announcement, category)
            SELECT g, 'visitor', '', %(per)s, v.created_at, v.created_at,
                CASE WHEN g %% 10 = 0 THEN NULL ELSE v.created_at + interval '20 minutes' END,
                false, '', ''
            FROM generate_series(1, %(n)s) g JOIN kefu_visitor v ON v.id = g
            """,
            {"n": conversations, "per": PER_CONVERSATION},
        )
        cur.execute(
            """
            INSERT INTO kefu_session (status, created_at, queued_at, assigned_at,
                first_response_at, closed_at, closed_by, agent_id, channel_id, conversation_id,
                visitor_id, workgroup_id, handover_reason, robot_misses, csat_comment, csat_score)
            SELECT CASE WHEN g %% 10 = 0 THEN 'open' ELSE 'closed' END, c.created_at,
                c.created_at, c.created_at + interval '5 seconds',
                c.created_at + interval '40 seconds', c.closed_at,
                CASE WHEN g %% 10 = 0 THEN '' ELSE 'agent' END, a.id, %(channel)s, g, g,
                %(workgroup)s, '', 0, '', NULLIF(g %% 6, 0)
            FROM generate_series(1, %(n)s) g JOIN im_conversation c ON c.id = g
            JOIN bench_agent a ON a.i = g %% %(agents)s
            """,
            {
                "n": conversations,
                "channel": channel.pk,
                "workgroup": workgroup.pk,
                "agents": AGENTS,
            },
        )
        cur.execute(
            """
            INSERT INTO im_participant (member_key, name, role, delivered_seq, read_seq,
                joined_at, conversation_id, user_id, mention_seq, notifications_off)
            SELECT 'v:' || g, 'visitor', 'member', %(per)s, %(per)s,
                c.created_at, g, NULL, 0, false
            FROM generate_series(1, %(n)s) g JOIN im_conversation c ON c.id = g
            UNION ALL
            SELECT 'u:' || %(searcher)s, 'Searcher 0', 'member', %(per)s,
                %(per)s, c.created_at, g, %(searcher)s, 0, false
            FROM generate_series(1, %(n)s) g JOIN im_conversation c ON c.id = g
            """,
            {"n": conversations, "searcher": agents[0], "per": PER_CONVERSATION},
        )
        cur.execute(
            """
            INSERT INTO im_message (seq, sender_key, sender_type, sender_name, msg_type, content,
                created_at, conversation_id, sender_user_id, internal, mentions, search_vector,
                meta, code, params)
            SELECT s.seq,
                CASE WHEN s.customer THEN 'v:' || s.conv ELSE 'u:' || %(searcher)s END,
                CASE WHEN s.customer THEN 'visitor' ELSE 'agent' END,
                CASE WHEN s.customer THEN 'visitor' ELSE 'Searcher 0' END, 'text',
                CASE WHEN s.customer THEN t.content || ' #' || (1000000 + s.g) ELSE t.content END,
                c.created_at + s.seq * interval '30 seconds', s.conv, NULL, false, '[]'::jsonb,
                CASE WHEN s.customer
                    THEN t.vec || to_tsvector('simple', (1000000 + s.g)::text) ELSE t.vec END,
                '{}'::jsonb, '', '{}'::jsonb
            FROM (
                SELECT g, 1 + g / %(per)s AS conv, 1 + g %% %(per)s AS seq,
                    g %% 2 = 0 AS customer, (g::bigint * 7919) %% 4000 AS text_i
                FROM generate_series(0, %(m)s - 1) g
            ) s
            JOIN bench_text t ON t.i = s.text_i
            JOIN im_conversation c ON c.id = s.conv
            """,
            {"m": conversations * PER_CONVERSATION, "searcher": agents[0], "per": PER_CONVERSATION},
        )
        for table in ("kefu_visitor", "im_conversation", "kefu_session", "im_message"):
            sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - our own table names
            cur.execute(sql)
        load_s = time.perf_counter() - t0
        cur.execute("CREATE INDEX im_message_search ON im_message USING gin (search_vector)")
        cur.execute("ANALYZE")
        print(
            f"  loaded in {load_s:.0f} s, GIN index built in "
            f"{time.perf_counter() - t0 - load_s:.0f} s",
            flush=True,
        )
    return {"searcher": agents[0], "conversations": conversations, "messages": messages}


BASELINE_SQL = """
SELECT s.id FROM kefu_session s JOIN kefu_visitor v ON v.id = s.visitor_id
WHERE s.conversation_id IN (
    SELECT conversation_id FROM im_participant WHERE member_key = %(member)s AND left_at IS NULL
) {filters}
AND (v.name ILIKE %(like)s OR v.email ILIKE %(like)s OR EXISTS (
    SELECT 1 FROM im_message m WHERE m.conversation_id = s.conversation_id
    AND m.recalled_at IS NULL AND m.content ILIKE %(like)s
))
ORDER BY s.id DESC LIMIT 21
"""


def measure(info: dict[str, int], runs: int) -> dict[str, dict[str, float | int | None]]:
    from django.db import connection
    from django_tenants.utils import schema_context

    from kefu import search

    rng = random.Random(3)
    member = f"u:{info['searcher']}"
    out: dict[str, dict[str, float | int | None]] = {}
    all_fts: list[float] = []
    all_naive: list[float] = []
    with schema_context(SCHEMA):
        for kind, (template, extra) in QUERIES.items():
            fts: list[float] = []
            naive: list[float] = []
            same = 0
            for _ in range(runs):
                g = rng.randrange(2, info["conversations"], 2)  # even: has an e-mail
                q = template.format(
                    order=1_000_000 + rng.randrange(0, info["messages"], 2),
                    name=f"客户{g}",
                    email=f"user{g}@example.com",
                )
                filters = search.Filters(**extra)
                t = time.perf_counter()
                hits, _ = search.conversation_search(
                    member_key=member, query=q, filters=filters, limit=20
                )
                fts.append((time.perf_counter() - t) * 1000)
                clauses = "".join(f" AND s.{k} = %({k})s" for k in extra if k == "status")
                if "csat_max" in extra:
                    clauses += " AND s.csat_score <= %(csat_max)s"
                like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                t = time.perf_counter()
                with connection.cursor() as cur:
                    cur.execute(
                        BASELINE_SQL.format(filters=clauses),
                        {"member": member, "like": like, **extra},
                    )
                    ids = [r[0] for r in cur.fetchall()][:20]
                naive.append((time.perf_counter() - t) * 1000)
                same += ids == [h.session.pk for h in hits]
            out[kind] = {
                "p50_ms": pct(fts, 50), "p99_ms": pct(fts, 99),
                "ilike_p50_ms": pct(naive, 50), "ilike_p99_ms": pct(naive, 99),
                "same_first_page": same, "runs": runs,
            }  # fmt: skip
            all_fts += fts
            all_naive += naive
            print(f"  {kind:16} search p50 {pct(fts, 50):8.1f} ms  p99 {pct(fts, 99):8.1f} ms"
                  f"   ILIKE p50 {pct(naive, 50):8.1f} ms  p99 {pct(naive, 99):8.1f} ms"
                  f"   same page {same}/{runs}", flush=True)  # fmt: skip
    out["all"] = {
        "p50_ms": pct(all_fts, 50), "p99_ms": pct(all_fts, 99),
        "ilike_p50_ms": pct(all_naive, 50), "ilike_p99_ms": pct(all_naive, 99),
        "runs": len(all_fts),
    }  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=20, help="runs per query kind")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env = bench_env()
    os.environ.update(env)
    _ensure_database(env["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_schemas", interactive=False, verbosity=0)
    info = generate(args.messages)
    print(f"searching {info['messages']:,} messages, {info['conversations']:,} conversations")
    result = measure(info, args.runs)
    a = result["all"]
    print(
        f"all kinds: search p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms; "
        f"ILIKE baseline p50 {a['ilike_p50_ms']:.1f} ms, p99 {a['ilike_p99_ms']:.1f} ms"
    )
    if args.json:
        print(json.dumps({"messages": info["messages"], **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
