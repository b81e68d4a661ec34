"""A TXT resolver for tests of custom domains (``WEIYU_DNS_RESOLVER``): answers from
:data:`RECORDS`, which a test fills (same process: the back office's verify runs in the request)."""

from __future__ import annotations

from tenants.domains import DomainCheckError

#: record name → texts; a value of ``None`` makes the lookup fail
RECORDS: dict[str, list[str] | None] = {}


class FakeTxtResolver:
    """:class:`tenants.domains.TxtResolver` over :data:`RECORDS`."""

    def txt(self, name: str) -> list[str]:
        texts = RECORDS.get(name, [])
        if texts is None:
            raise DomainCheckError("no server answered")
        return list(texts)
