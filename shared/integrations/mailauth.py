"""Our own mail's authentication: the DNS records a sending domain must publish, and DKIM signing.

Gmail's and Yahoo's bulk-sender rules want SPF, DKIM and DMARC, and RFC 8058 wants the one-click
headers inside a DKIM signature. `check_domain` looks the three up (dnspython, against the
resolvers given, else the system's) and says what is missing or wrong, one `Finding` per record;
`sign` adds a DKIM-Signature (dkimpy) whose h= covers `SIGNED_HEADERS`, so a relay or a forwarder
that changes any of them breaks the signature. The private key comes from the environment by the
mailbox's `dkim_secret_name`, like SMTP passwords: never stored, never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from shared.errors import MailAuthError

# What h= covers: RFC 8058 §3.1 requires the two List-Unsubscribe headers; Gmail wants From; the
# rest keeps the thread, the date and the body's shape from being swapped. Threading headers are
# listed even when absent (step 1), so nobody can add them later without breaking the signature.
SIGNED_HEADERS: tuple[str, ...] = (
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
)
DNS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    record: str  # SPF | DKIM | DMARC
    name: str  # the DNS name looked up
    ok: bool
    detail: str  # what was found, or what is missing and what to publish


def resolver(nameservers: Sequence[str] = ()) -> dns.resolver.Resolver:
    """A resolver on `ip` or `ip:port` servers (the tests' DNS server), else the system's configuration."""
    if not nameservers:
        r = dns.resolver.Resolver()
    else:
        r = dns.resolver.Resolver(configure=False)
        hosts, ports = [], set()
        for server in nameservers:
            host, _, port = server.strip().rpartition(":") if server.count(":") == 1 else (server.strip(), "", "")
            if not host or (port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)):
                raise ValueError(f"DNS server {server!r} is not ip or ip:port")
            hosts.append(host)
            ports.add(int(port) if port else 53)
        if len(ports) > 1:
            raise ValueError(f"all DNS servers must use one port, got {sorted(ports)}")
        r.nameservers, r.port = hosts, ports.pop()
    r.lifetime = r.timeout = DNS_TIMEOUT_S
    return r


def txt(res: dns.resolver.Resolver, name: str) -> list[str]:
    """The TXT strings at `name` (each record's chunks joined), [] when there are none; MailAuthError when DNS fails."""
    try:
        answer = res.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError) as exc:
        raise MailAuthError(f"DNS lookup of {name} TXT failed: {type(exc).__name__}") from None
    # Records are text from outside: control characters are shown as "?", never sent to a terminal.
    return ["".join(c if c.isprintable() else "?" for c in b"".join(rdata.strings).decode("utf-8", "replace"))
            for rdata in answer]


def dnsfunc(res: dns.resolver.Resolver) -> Callable[..., bytes]:
    """dkimpy's `dnsfunc(name, timeout=...)` on our resolver (the first TXT record, bytes; b'' when none)."""
    def lookup(name: bytes | str, timeout: float = DNS_TIMEOUT_S) -> bytes:
        found = txt(res, name.decode() if isinstance(name, bytes) else name)
        return found[0].encode() if found else b""
    return lookup


def _spf(res: dns.resolver.Resolver, domain: str) -> Finding:
    records = [t for t in txt(res, domain) if t.lower().startswith("v=spf1")]
    if not records:
        return Finding("SPF", domain, False, "missing: publish TXT \"v=spf1 include:<your relay's SPF domain> -all\"")
    if len(records) > 1:
        return Finding("SPF", domain, False, f"{len(records)} SPF records (RFC 7208 permerror): merge them into one")
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return Finding("SPF", domain, False, f"'{record}' lets any server send as {domain}: end it with -all or ~all")
    if not any(t in terms for t in ("-all", "~all")) and not any(t.startswith("redirect=") for t in terms):
        return Finding("SPF", domain, False, f"'{record}' has no -all or ~all: other servers are not refused")
    return Finding("SPF", domain, True, record)


def _dkim(res: dns.resolver.Resolver, domain: str, selector: str | None, private_key: bytes | None) -> Finding:
    if not selector:
        return Finding("DKIM", f"<selector>._domainkey.{domain}", False,
                       "no selector known: set the mailbox's --dkim-selector (we sign) or pass --selector with the one "
                       "your relay signs with (the s= of a DKIM-Signature header on mail it sent)")
    name = f"{selector}._domainkey.{domain}"
    records = [t for t in txt(res, name) if "p=" in t.replace(" ", "")]
    if not records:
        return Finding("DKIM", name, False, "missing: publish TXT \"v=DKIM1; k=rsa; p=<public key>\"")
    tags = dict(part.strip().split("=", 1) for part in records[0].split(";") if "=" in part)
    if not tags.get("p", "").strip():
        return Finding("DKIM", name, False, "the key is revoked (empty p=)")
    if private_key is not None:
        probe = (f"From: <check@{domain}>\r\nTo: <check@{domain}>\r\nSubject: DKIM check\r\n"
                 f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <dkim-check@{domain}>\r\n\r\ncheck\r\n").encode()
        signed = sign(probe, domain=domain, selector=selector, private_key=private_key)
        if not dkim.verify(signed, dnsfunc=dnsfunc(res)):
            return Finding("DKIM", name, False, "the published key does not verify a signature made with the mailbox's "
                                                "private key: publish that key's public half")
    return Finding("DKIM", name, True, records[0][:120] + ("…" if len(records[0]) > 120 else ""))


def _dmarc(res: dns.resolver.Resolver, domain: str) -> Finding:
    name = f"_dmarc.{domain}"
    records = [t for t in txt(res, name) if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if not records:
        return Finding("DMARC", name, False, "missing: publish TXT \"v=DMARC1; p=none; rua=mailto:<reports address>\" "
                                             "(then quarantine or reject once reports are clean)")
    if len(records) > 1:
        return Finding("DMARC", name, False, f"{len(records)} DMARC records: receivers ignore them all; keep one")
    tags = {k.strip().lower(): v.strip() for k, v in
            (part.split("=", 1) for part in records[0].split(";") if "=" in part)}
    if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return Finding("DMARC", name, False, f"'{records[0]}' has no valid p= (none, quarantine or reject)")
    return Finding("DMARC", name, True, records[0])


def check_domain(domain: str, *, selector: str | None, private_key: bytes | None = None,
                 nameservers: Sequence[str] = ()) -> list[Finding]:
    """SPF, DKIM (at `selector`; with `private_key`, that it verifies against DNS) and DMARC for `domain`."""
    res = resolver(nameservers)
    domain = domain.strip().lower().rstrip(".")
    return [_spf(res, domain), _dkim(res, domain, selector, private_key), _dmarc(res, domain)]


def private_key(secret_name: str, value: str | None) -> bytes:
    """The PEM private key held by `secret_name` (a literal "\\n" in a one-line env var is a newline)."""
    if not value:
        raise MailAuthError(f"the DKIM key {secret_name} is not set")
    pem = value.replace("\\n", "\n").strip().encode()
    if b"PRIVATE KEY-----" not in pem:
        raise MailAuthError(f"the DKIM key {secret_name} is not a PEM private key")
    return pem + b"\n"


def sign(raw: bytes, *, domain: str, selector: str, private_key: bytes) -> bytes:
    """`raw` with a DKIM-Signature (relaxed/relaxed, rsa-sha256) over SIGNED_HEADERS and the body prepended."""
    try:
        signature = dkim.sign(raw, selector.encode(), domain.encode(), private_key,
                              canonicalize=(b"relaxed", b"relaxed"),
                              include_headers=[h.encode() for h in SIGNED_HEADERS])
    except dkim.DKIMException as exc:  # its messages name the problem, never the key's bytes
        raise MailAuthError(f"DKIM signing for {selector}._domainkey.{domain} failed: {exc}") from None
    return signature + raw
