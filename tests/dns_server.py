"""A real DNS server for tests (dnslib), on a free loopback port over UDP and TCP, serving the TXT records given.

`zone` maps a name to its TXT strings; it can be changed while the server runs (a test publishing
the right record after a wrong one). Names not in it answer NXDOMAIN, as a real zone does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, zone: dict[str, list[str]]) -> None:
        self.zone = zone

    def resolve(self, request, handler):  # noqa: ANN001 (dnslib's interface)
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        records = self.zone.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
            for value in records:
                data = value.encode()
                chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        return reply


def _free_udp_and_tcp_port() -> int:
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


@contextmanager
def dns_server(zone: dict[str, list[str]]) -> Iterator[str]:
    """Serve `zone`; yields "127.0.0.1:<port>" for DNS_NAMESERVERS."""
    port = _free_udp_and_tcp_port()
    resolver = ZoneResolver(zone)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
    servers = [DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=quiet) for tcp in (False, True)]
    for s in servers:
        s.start_thread()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for s in servers:
            s.stop()
