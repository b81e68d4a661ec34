"""A real LDAP server for the directory sync tests: ldaptor (pure Python, on Twisted) serving an
in-memory tree read from an LDIF file, on 127.0.0.1, in a process of its own.

The tree is read again for every new connection, so a test changes "upstream" by rewriting the
file (:meth:`LdapServer.write`) and the next sync sees it. Binds check ``userPassword`` of the
entry named by the bind DN (invalid credentials → result 49, as OpenLDAP and AD answer).

The server pages like Active Directory: a search that would return more than ``max_page``
entries without the paged-results control (RFC 2696) ends with ``sizeLimitExceeded`` after
``max_page`` entries; with the control, each page holds at most ``min(asked, max_page)``
entries and the search-done message carries the cookie of the next page (empty at the end).
``pages_served`` counts the paged responses (read through :meth:`LdapServer.pages`).

Run by :class:`LdapServer` as ``python tests/ldap_server.py <ldif> <port> <max_page> <count>
[<key.pem> <cert.pem> [starttls]]`` (with a key and certificate: LDAPS, or with ``starttls``
plain LDAP offering the StartTLS operation).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

PAGED_OID = b"1.2.840.113556.1.4.319"
STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _serve(ldif: str, port: int, max_page: int, count_file: str, tls: list[str]) -> None:
    from ldap3.protocol.rfc2696 import RealSearchControlValue
    from ldaptor import interfaces
    from ldaptor.inmemory import fromLDIFFile
    from ldaptor.protocols import pureldap
    from ldaptor.protocols.ldap import distinguishedname, ldaperrors
    from ldaptor.protocols.ldap.ldapserver import LDAPServer
    from pyasn1.codec.ber import decoder, encoder
    from twisted.internet import defer, reactor
    from twisted.internet.protocol import ServerFactory
    from twisted.python.components import registerAdapter

    served = [0]

    class PagingServer(LDAPServer):
        def handle(self, msg):
            self._msg_id = msg.id
            return super().handle(msg)

        def queue(self, id, op):
            controls = getattr(self, "_done_controls", {}).pop(id, None)
            if controls is None:
                return super().queue(id, op)
            self.transport.write(pureldap.LDAPMessage(op, id=id, controls=controls).toWire())

        def handle_LDAPSearchRequest(self, request, controls, reply):  # noqa: N802
            paged = [c for c in controls or [] if c[0] == PAGED_OID]
            others = [c for c in controls or [] if c[0] != PAGED_OID]
            self.checkControls(others)
            if request.baseObject == b"" and request.scope == pureldap.LDAP_SCOPE_baseObject:
                return self.getRootDSE(request, reply)
            msg_id = self._msg_id
            asked, offset = None, 0
            if paged:
                value, _rest = decoder.decode(paged[0][2], asn1Spec=RealSearchControlValue())
                asked = int(value["size"]) or max_page
                offset = int(bytes(value["cookie"]) or b"0")
            root = interfaces.IConnectedLDAPEntry(self.factory)
            found = []

            def searched(base):
                return base.search(
                    filterObject=request.filter,
                    attributes=request.attributes,
                    scope=request.scope,
                    derefAliases=request.derefAliases,
                    callback=found.append,
                )

            def send(_):
                wanted = request.attributes
                limit = max_page if asked is None else min(asked, max_page)
                page = found[offset : offset + limit]
                for entry in page:
                    items = entry.items()
                    if wanted and b"*" not in wanted:
                        lower = {w.lower() for w in wanted}
                        items = [(k, v) for k, v in items if k.lower() in lower]
                    reply(
                        pureldap.LDAPSearchResultEntry(
                            objectName=entry.dn.getText(), attributes=items
                        )
                    )
                if asked is None:
                    code = (
                        ldaperrors.LDAPSizeLimitExceeded.resultCode
                        if len(found) > limit
                        else ldaperrors.Success.resultCode
                    )
                    return pureldap.LDAPSearchResultDone(resultCode=code)
                served[0] += 1
                Path(count_file).write_text(str(served[0]))
                nxt = offset + limit
                value = RealSearchControlValue()
                value["size"] = len(found)
                value["cookie"] = str(nxt).encode() if nxt < len(found) else b""
                self._done_controls = getattr(self, "_done_controls", {})
                self._done_controls[msg_id] = [(PAGED_OID, None, encoder.encode(value))]
                return pureldap.LDAPSearchResultDone(resultCode=ldaperrors.Success.resultCode)

            d = root.lookup(distinguishedname.DistinguishedName(request.baseObject))
            d.addCallback(searched)
            d.addCallback(send)
            d.addErrback(self._cbSearchLDAPError)
            d.addErrback(defer.logError)
            d.addErrback(self._cbSearchOtherError)
            return d

    if "starttls" in tls:  # the StartTLS extended operation (RFC 4511 §4.14)

        def handle_extended(self, request, controls, reply):
            if request.requestName not in (STARTTLS_OID, STARTTLS_OID.decode()):
                return LDAPServer.handle_LDAPExtendedRequest(self, request, controls, reply)
            from twisted.internet import ssl

            done = pureldap.LDAPExtendedResponse(resultCode=0, responseName=STARTTLS_OID)
            self.transport.write(pureldap.LDAPMessage(done, id=self._msg_id).toWire())
            self.transport.startTLS(ssl.DefaultOpenSSLContextFactory(tls[0], tls[1]))
            return None

        PagingServer.handle_LDAPExtendedRequest = handle_extended

    class Factory(ServerFactory):
        protocol = PagingServer

        def buildProtocol(self, addr):  # noqa: N802
            trees = []
            with open(ldif, "rb") as f:
                fromLDIFFile(f).addCallback(trees.append)
            self.root = trees[0]  # a file is read in one go: the Deferred has fired
            proto = self.protocol()
            proto.debug = False
            proto.factory = self
            return proto

    from twisted.python import log

    log.startLogging(sys.stderr)
    registerAdapter(lambda factory: factory.root, Factory, interfaces.IConnectedLDAPEntry)
    if tls and "starttls" not in tls:  # LDAPS: the key and certificate files
        from twisted.internet import ssl

        context = ssl.DefaultOpenSSLContextFactory(tls[0], tls[1])
        reactor.listenSSL(port, Factory(), context, interface="127.0.0.1")
    else:
        reactor.listenTCP(port, Factory(), interface="127.0.0.1")
    reactor.run()


class LdapServer:
    """The server above in a subprocess on a free loopback port, serving ``ldif`` (a path the
    test rewrites with :meth:`write`); with ``tls`` (key file, certificate file) it speaks
    LDAPS, or with ``starttls`` too, plain LDAP that StartTLS upgrades."""

    def __init__(
        self,
        ldif: Path,
        text: str,
        *,
        max_page: int = 1000,
        tls: tuple[Path, Path] | None = None,
        starttls: bool = False,
    ) -> None:
        from tests.servers import free_port
        from tests.waits import wait_until

        self.ldif = ldif
        self.count_file = ldif.with_suffix(".pages")
        self.write(text)
        self.port = free_port()
        self.url = f"{'ldaps' if tls and not starttls else 'ldap'}://127.0.0.1:{self.port}"
        self.log = ldif.with_suffix(".log")
        with self.log.open("wb") as log:  # the server's own log, for a failing test
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(ldif), str(self.port), str(max_page),
                 str(self.count_file), *(str(p) for p in tls or ()),
                 *(["starttls"] if starttls else [])],
                stdout=log,
                stderr=log,
            )  # fmt: skip
        wait_until(self._answers, what="the LDAP server listening")

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        except OSError:
            return False
        return True

    def write(self, text: str) -> None:
        """Replace the tree (LDIF, parents before children, ending with a blank line); the next
        connection sees it."""
        self.ldif.write_text(text, encoding="utf-8")

    def pages(self) -> int:
        """How many paged search responses the server has sent."""
        return int(self.count_file.read_text()) if self.count_file.exists() else 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:])
