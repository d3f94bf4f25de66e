"""What a lead's email and title say about them, by rule: one list and one classifier of each, for everyone.

The heuristics provider, the paid providers' mappers and lead scoring all read seniority,
department, free-mail, role-address and disposable-domain facts from here, so they cannot disagree
("Executive Assistant to the CEO" is entry level everywhere). Pure and offline: the public-suffix
list is the bundled snapshot, never fetched.
"""

from __future__ import annotations

import re
from functools import lru_cache

import tldextract
from disposable_email_domains import blocklist as _DISPOSABLE

# -- free mail ----------------------------------------------------------------------------------

# Exact consumer mailbox domains (a curated, not exhaustive, list of the big ones per region).
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com
    yahoo.com ymail.com rocketmail.com
    hotmail.com outlook.com live.com msn.com passport.com
    live.co.uk live.fr live.de live.nl live.ca live.com.au live.it
    aol.com aim.com
    icloud.com me.com mac.com
    proton.me protonmail.com protonmail.ch pm.me
    tutanota.com tutanota.de tuta.io tutamail.com
    mail.ru bk.ru inbox.ru list.ru internet.ru ya.ru rambler.ru
    mail.com email.com usa.com zoho.com zohomail.com fastmail.com fastmail.fm hey.com hushmail.com
    web.de t-online.de freenet.de arcor.de posteo.de mailbox.org
    orange.fr wanadoo.fr free.fr laposte.net sfr.fr neuf.fr
    libero.it virgilio.it tiscali.it alice.it
    seznam.cz wp.pl o2.pl interia.pl onet.pl
    btinternet.com sky.com virginmedia.com talktalk.net ntlworld.com
    comcast.net verizon.net att.net sbcglobal.net bellsouth.net cox.net charter.net earthlink.net
    shaw.ca rogers.com sympatico.ca
    bigpond.com optusnet.com.au
    uol.com.br bol.com.br terra.com.br
    qq.com 163.com 126.com sina.com sohu.com yeah.net
    naver.com daum.net hanmail.net
    rediffmail.com
    """.split()
)

# Providers with a domain per country (gmx.de, gmx.at, yandex.ru, yandex.kz, yahoo.co.jp, …):
# matched on the registered domain's label so every national variant counts.
FREE_MAIL_FAMILIES: frozenset[str] = frozenset({"gmx", "yandex", "yahoo", "hotmail", "outlook", "aol"})

# -- role addresses -----------------------------------------------------------------------------

# Compared with separators removed, so "no-reply", "no_reply" and "no.reply" all match "noreply".
ROLE_LOCAL_PARTS: frozenset[str] = frozenset(
    """
    info information sales support admin administrator noreply donotreply mailer mailerdaemon
    contact contactus hello hi hey help helpdesk office team staff all everyone
    billing accounts accounting accountspayable ap ar finance invoice invoices payments
    hr jobs careers recruiting recruitment talent hiring
    marketing press media pr news newsletter social
    webmaster postmaster hostmaster abuse security privacy legal compliance gdpr dpo
    service services customerservice customercare care customersuccess success
    enquiries enquiry inquiries inquiry orders order bookings booking reservations
    partners partner partnerships affiliates feedback root it dev devops ops sysadmin
    notifications notification alerts alert reception frontdesk general mail email
    purchasing procurement shop store sales1 sales2 bizdev ceo founders
    """.split()
)

# -- titles ---------------------------------------------------------------------------------------

SENIORITIES = ("c_level", "vp", "director", "manager", "senior", "entry")

# Abbreviations expanded before matching, so rules only need the long form.
_ABBREVIATIONS = {
    "sr": "senior",
    "snr": "senior",
    "jr": "junior",
    "jnr": "junior",
    "mgr": "manager",
    "mngr": "manager",
    "dir": "director",
    "eng": "engineer",
    "engr": "engineer",
    "swe": "software engineer",
    "sde": "software engineer",
    "svp": "vp",
    "evp": "vp",
    "avp": "vp",
    "mktg": "marketing",
    "mkt": "marketing",
    "exec": "executive",
    "asst": "assistant",
    "assoc": "associate",
    "coord": "coordinator",
    "rep": "representative",
    "acct": "account",
    "ae": "account executive",
    "sdr": "sales development representative",
    "bdr": "business development representative",
    "bizdev": "business development",
    "vicepresident": "vice president",
    "cofounder": "co founder",
}

_NON_WORD = re.compile(r"[^0-9a-z]+")


def _rx(*patterns: str) -> re.Pattern[str]:
    """One compiled alternation; each pattern is matched on whole words of the normalized title."""
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


# Checked in order; the first rule that matches decides. Order encodes the tricky cases:
# assistants to executives are not executives; "vice president" must win over "president".
_SENIORITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("entry", _rx(r"assistant to", r"executive assistant", r"personal assistant", r"intern", r"internship",
                  r"trainee", r"apprentice", r"student", r"working student")),
    ("director", _rx(r"chief of staff")),
    ("c_level", _rx(r"ceo", r"cto", r"cfo", r"coo", r"cmo", r"cro", r"cio", r"ciso", r"cpo", r"chro", r"cdo",
                    r"cco", r"cso", r"clo", r"cxo", r"chief", r"founder", r"co founder",
                    r"(?<!product )(?<!process )(?<!account )(?<!business )owner", r"chairman",
                    r"chairwoman", r"chairperson", r"managing director", r"managing partner", r"general partner",
                    r"founding partner", r"executive director", r"general counsel", r"board member")),
    ("vp", _rx(r"vp", r"vice president", r"vice pres")),
    ("c_level", _rx(r"president")),
    # A bare "Partner" (law, consulting, VC) is an owner; "Channel Partner Manager" is not.
    ("c_level", re.compile(r"^(?:senior |equity |founding )?partner$")),
    ("director", _rx(r"director", r"head", r"head of")),
    ("manager", _rx(r"manager", r"supervisor", r"controller", r"comptroller", r"team lead", r"team leader",
                    r"superintendent", r"foreman")),
    ("senior", _rx(r"senior", r"principal", r"lead", r"product owner", r"business partner",
                   r"staff (?:software |data |machine learning )?(?:engineer|scientist|developer)", r"architect",
                   r"expert", r"distinguished", r"fellow", r"iii", r"iv")),
    ("entry", _rx(r"junior", r"associate", r"assistant", r"coordinator", r"representative", r"specialist",
                  r"analyst", r"engineer", r"developer", r"programmer", r"consultant", r"executive", r"designer",
                  r"scientist", r"accountant", r"recruiter", r"administrator", r"officer", r"agent", r"clerk",
                  r"technician", r"advisor", r"adviser", r"writer", r"strategist", r"generalist", r"graduate",
                  r"paralegal", r"bookkeeper")),
)

# Functional keywords first (a "Chief Revenue Officer" is in sales, a CTO in engineering);
# "executive" is the fallback for general management titles with no function in them.
_DEPARTMENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("legal", _rx(r"legal", r"counsel", r"attorney", r"lawyer", r"paralegal", r"compliance", r"clo",
                  r"privacy", r"solicitor", r"barrister", r"litigation")),
    ("hr", _rx(r"hr", r"hris", r"human resources?", r"people", r"talent", r"recruit(?:er|ing|ment)?",
               r"chro", r"benefits", r"compensation", r"learning and development", r"l and d", r"payroll",
               r"human capital", r"workforce")),
    ("finance", _rx(r"finance", r"financial", r"cfo", r"accounting", r"accountant", r"controller",
                    r"comptroller", r"treasury", r"treasurer", r"fp and a", r"audit", r"auditor", r"tax",
                    r"bookkeeper", r"bookkeeping", r"investor relations", r"billing", r"accounts payable",
                    r"accounts receivable")),
    ("sales", _rx(r"sales", r"sales development", r"business development", r"account executive",
                  r"account manager", r"account director", r"key account", r"revenue", r"cro", r"inside sales",
                  r"commercial", r"channel", r"partnerships?", r"presales", r"pre sales", r"enterprise accounts?",
                  r"deal desk", r"business dev")),
    ("marketing", _rx(r"marketing", r"cmo", r"growth", r"brand", r"branding", r"content", r"seo", r"sem",
                      r"demand gen(?:eration)?", r"communications", r"comms", r"pr", r"public relations",
                      r"social media", r"copywriter", r"events?", r"campaigns?", r"advertising", r"media",
                      r"digital marketing", r"lifecycle", r"community")),
    ("it", _rx(r"it", r"information technology", r"chief information", r"cio", r"ciso", r"information security",
               r"infosec", r"cyber ?security", r"security", r"system administrator", r"systems administrator",
               r"sysadmin",
               r"network", r"helpdesk", r"help desk", r"desktop support", r"it support", r"infrastructure")),
    ("engineering", _rx(r"engineer", r"engineering", r"developer", r"development engineer", r"software",
                        r"devops", r"sre", r"site reliability", r"programmer", r"cto", r"technical",
                        r"technology", r"tech lead", r"architect", r"data scientist", r"data science",
                        r"machine learning", r"ml", r"ai", r"qa", r"quality assurance", r"frontend", r"front end",
                        r"backend", r"back end", r"full stack", r"fullstack", r"r and d", r"research and development",
                        r"firmware", r"hardware", r"mobile", r"ios", r"android", r"data")),
    ("product", _rx(r"product", r"cpo", r"ux", r"ui", r"design", r"designer", r"user research",
                    r"user experience")),
    ("support", _rx(r"support", r"customer success", r"customer service", r"customer experience", r"cx",
                    r"client services?", r"customer care", r"onboarding", r"implementation")),
    ("operations", _rx(r"operations", r"operating", r"coo", r"ops", r"logistics", r"supply chain",
                       r"procurement", r"purchasing", r"facilities", r"office manager", r"administration",
                       r"fulfillment", r"warehouse", r"business operations", r"strategy")),
    ("executive", _rx(r"ceo", r"chief executive", r"founder", r"co founder", r"owner", r"president",
                      r"chairman", r"chairwoman", r"chairperson", r"managing director", r"managing partner",
                      r"general manager", r"chief of staff", r"executive director", r"partner", r"board",
                      r"cco", r"cxo", r"principal")),
)


def normalize_title(title: str) -> str:
    """Lower-case words separated by single spaces, abbreviations expanded ('Sr. VP, Sales' -> 'senior vp sales')."""
    words = _NON_WORD.sub(" ", title.lower().replace("&", " and ")).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)


@lru_cache(maxsize=16384)
def classify_title(title: str | None) -> tuple[str | None, str | None]:
    """(seniority, department) for a job title by keyword rules; (None, None) when nothing matches."""
    if not title:
        return None, None
    text = normalize_title(title)
    if not text:
        return None, None
    seniority = next((level for level, rule in _SENIORITY_RULES if rule.search(text)), None)
    department = next((dept for dept, rule in _DEPARTMENT_RULES if rule.search(text)), None)
    return seniority, department


# -- domains --------------------------------------------------------------------------------------

# Bundled suffix snapshot only: never fetch the public suffix list (workers may be offline and
# every lead would otherwise risk a network call on a cold cache).
_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def registered_domain(host: object) -> str | None:
    """'mail.acme.co.uk' -> 'acme.co.uk'; also accepts URLs. None when there is no public suffix."""
    if not isinstance(host, str) or not host:
        return None
    return _registered_domain(host)


@lru_cache(maxsize=65536)
def _registered_domain(host: str) -> str | None:
    text = _SCHEME.sub("", host.strip().lower())
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    text = text.split(":", 1)[0].strip(".")
    if not text or " " in text:
        return None
    try:
        parts = _TLD(text)
    except Exception:  # tldextract on odd unicode input; a domain we can't parse is no domain
        return None
    if not parts.domain or not parts.suffix:
        return None
    return f"{parts.domain}.{parts.suffix}"


@lru_cache(maxsize=65536)
def is_free_mail(domain: str) -> bool:
    domain = domain.lower()
    if domain in FREE_MAIL_DOMAINS:
        return True
    registered = registered_domain(domain)
    if registered is None:
        return False
    return registered in FREE_MAIL_DOMAINS or registered.split(".", 1)[0] in FREE_MAIL_FAMILIES


@lru_cache(maxsize=65536)
def is_disposable(domain: str) -> bool:
    domain = domain.lower()
    if domain in _DISPOSABLE:
        return True
    registered = registered_domain(domain)
    return registered is not None and registered in _DISPOSABLE


LOCAL_SEPARATORS = re.compile(r"[._\-]+")


def is_role_address(local_part: str) -> bool:
    base = local_part.lower().split("+", 1)[0]
    return LOCAL_SEPARATORS.sub("", base) in ROLE_LOCAL_PARTS
