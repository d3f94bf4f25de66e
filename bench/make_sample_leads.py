"""Generate shared/data/sample_leads.csv: realistic B2B leads plus the hostile rows real files contain.

Deterministic (fixed seeds; Faker's output is pinned by requirements.lock), so the committed CSV
equals what this script prints. Run: `.venv/bin/python bench/make_sample_leads.py`.

Contents, in file order after a shuffle:
* N_LEADS distinct good leads on ~600 companies across 9 countries, each company with one email
  pattern (first.last, flast, ...); some free-mail (gmail...) and role (info@...) addresses;
  HOSTILE_VALID of them carry formula-injection values (`=cmd()`...) that import neutralises.
* N_INVALID rows that must be rejected: malformed, empty or formula-leading emails, a 20k field.
* N_DUPLICATES repeats of earlier leads, the email re-cased or padded.
Header names are deliberately the varied ones exports use ("Email Address", "Job Title", ...).
"""

from __future__ import annotations

import csv
import io
import random
import re
import sys
import unicodedata
from pathlib import Path
from typing import NamedTuple

from faker import Faker

SEED = 20_240_601
N_LEADS = 3_000
N_INVALID = 40
N_DUPLICATES = 60
N_COMPANIES = 600
HOSTILE_VALID = 5

OUTPUT = Path(__file__).resolve().parents[1] / "shared" / "data" / "sample_leads.csv"
HEADER = ["Email Address", "First Name", "Last Name", "Job Title", "Company", "Website", "Phone",
          "LinkedIn URL", "Country", "Lead Source"]

# (faker locale, country, country calling code, usual TLDs)
MARKETS = [
    ("en_US", "United States", "1", ("com", "com", "com", "io", "co", "ai")),
    ("en_GB", "United Kingdom", "44", ("co.uk", "co.uk", "com", "io")),
    ("de_DE", "Germany", "49", ("de", "de", "com", "io")),
    ("fr_FR", "France", "33", ("fr", "fr", "com")),
    ("nl_NL", "Netherlands", "31", ("nl", "com", "io")),
    ("es_ES", "Spain", "34", ("es", "com")),
    ("en_CA", "Canada", "1", ("ca", "com")),
    ("en_AU", "Australia", "61", ("com.au", "com.au", "io")),
    ("sv_SE", "Sweden", "46", ("se", "com")),
]
MARKET_WEIGHTS = [40, 14, 12, 8, 6, 5, 6, 5, 4]

SENIORITIES = ["", "", "Senior ", "Lead ", "Head of ", "Director of ", "VP of ", "Chief"]
DEPARTMENTS = {
    "Sales": ("Account Executive", "Sales Development Representative", "Sales Manager", "CRO"),
    "Marketing": ("Marketing Manager", "Demand Generation Manager", "Content Strategist", "CMO"),
    "Engineering": ("Software Engineer", "Engineering Manager", "Staff Engineer", "CTO"),
    "Finance": ("Financial Analyst", "Controller", "Finance Manager", "CFO"),
    "Operations": ("Operations Manager", "Business Operations Analyst", "Program Manager", "COO"),
    "People": ("HR Business Partner", "Talent Acquisition Lead", "People Partner", "CHRO"),
    "Product": ("Product Manager", "Product Designer", "Product Owner", "CPO"),
    "IT": ("IT Manager", "Systems Administrator", "Security Engineer", "CIO"),
    "Customer Success": ("Customer Success Manager", "Account Manager", "Support Lead", "Chief Customer Officer"),
    "Revenue Operations": ("RevOps Analyst", "Sales Operations Manager", "CRM Administrator", "Chief Revenue Officer"),
}
FOUNDER_TITLES = ("Founder", "Co-Founder & CEO", "CEO", "Managing Director", "Owner", "President")
FREE_MAIL = ("gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com")
ROLE_BOXES = ("info", "sales", "contact", "hello", "office", "team")
EMAIL_PATTERNS = ("{f}.{l}", "{f}.{l}", "{f0}{l}", "{f}", "{f}{l0}", "{f}_{l}", "{l}.{f}")
LEAD_SOURCES = ("Apollo export", "Conference 2024", "Website form", "Referral", "Webinar", "")
COMPANY_NOISE = {"gmbh", "co", "kg", "ag", "inc", "llc", "ltd", "plc", "sa", "sarl", "sas", "bv", "nv", "ab", "and",
                 "und", "et", "y", "group", "the", "e", "v", "pty", "sl", "srl", "cie", "fils", "ohg", "mbh", "kgaa"}

INVALID_EMAILS = [
    "jane.doe@", "@acme.com", "jane.doe.acme.com", "jane doe@acme.com", "jane..doe@acme.com", "jane@@acme.com",
    "jane@acme", "jane@acme..com", "jane@-acme.com", "jane(at)acme.com", "mailto:jane@acme.com", "jane@localhost",
    "N/A", "unknown", "-", "TBD", "jane@acme.com, bob@acme.com", "jane.@acme.com", ".jane@acme.com",
    "jane@acme_corp.com", "=cmd()@evil.example", "+1@acme.com", "@SUM(1+1)", "=HYPERLINK(\"http://x.io\")",
    "jane@acme.com.", "jane@[127.0.0.1]", "jane@acme,com", "jäne@acme.com\u200b", "joe@exam ple.com", "x@y",
]
EMPTY_EMAIL_ROWS = N_INVALID - len(INVALID_EMAILS) - 1  # the last one is the 20k-char field
FORMULA_VALUES = ["=cmd()", "+1+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
                  "=HYPERLINK(\"http://evil.example\",\"click\")"]


class Company(NamedTuple):
    name: str
    domain: str
    pattern: str
    market: int


def ascii_slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower())


def make_companies(rng: random.Random, fakers: list[Faker]) -> list[Company]:
    companies: list[Company] = []
    used: set[str] = set()
    while len(companies) < N_COMPANIES:
        market = rng.choices(range(len(MARKETS)), MARKET_WEIGHTS)[0]
        name = fakers[market].company()
        words = [ascii_slug(w) for w in re.split(r"[\s,&.\-]+", name)]
        words = [w for w in words if w and w not in COMPANY_NOISE][:2] or ["company"]
        base = "".join(words) if rng.random() < 0.6 else "-".join(words)
        stem = base + rng.choice(("", "", "", "hq", "labs", "group", "tech"))
        domain = f"{stem}.{rng.choice(MARKETS[market][3])}"
        if domain in used:
            continue
        used.add(domain)
        companies.append(Company(name, domain, rng.choice(EMAIL_PATTERNS), market))
    return companies


def make_title(rng: random.Random) -> str:
    if rng.random() < 0.07:
        return rng.choice(FOUNDER_TITLES)
    department = rng.choice(sorted(DEPARTMENTS))
    seniority = rng.choice(SENIORITIES)
    if seniority == "Chief":
        return DEPARTMENTS[department][3]
    if seniority in ("Head of ", "Director of ", "VP of "):
        return f"{seniority}{department}"
    return f"{seniority}{rng.choice(DEPARTMENTS[department][:3])}"


def make_phone(rng: random.Random, code: str) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(9))
    if code == "1":
        return rng.choice((f"+1 ({digits[:3]}) 555-{digits[5:9]}", f"+1 {digits[:3]} 555 {digits[5:9]}",
                           f"({digits[:3]}) 555-{digits[5:9]}"))
    return rng.choice((f"+{code} {digits[:2]} {digits[2:5]} {digits[5:9]}", f"+{code}{digits}",
                       f"00{code} {digits[:3]} {digits[3:]}"))


def make_website(rng: random.Random, domain: str) -> str:
    return rng.choice((f"https://www.{domain}", domain, f"http://{domain}/", f"www.{domain}",
                       f"https://{domain}/about", f"https://www.{domain}/en/contact?ref=lead", ""))


def lead_row(rng: random.Random, faker: Faker, company: Company, used: set[str]) -> list[str]:
    first, last = faker.first_name(), faker.last_name()
    f, l = ascii_slug(first) or "x", ascii_slug(last) or "y"
    roll = rng.random()
    if roll < 0.03:
        local, domain = f"{f}.{l}{rng.randint(1, 99)}", rng.choice(FREE_MAIL)
    elif roll < 0.05:
        local, domain = rng.choice(ROLE_BOXES), company.domain
    else:
        local, domain = company.pattern.format(f=f, l=l, f0=f[0], l0=l[0]), company.domain
    email = f"{local}@{domain}"
    while email in used:
        email = f"{local}{rng.randint(2, 99)}@{domain}"
    used.add(email)
    _, country, code, _ = MARKETS[company.market]
    phone = make_phone(rng, code) if rng.random() < 0.45 else ""
    linkedin = (f"https://www.linkedin.com/in/{f}-{l}-{rng.getrandbits(24):06x}" if rng.random() < 0.6 else "")
    return [email, first, last, make_title(rng), company.name, make_website(rng, company.domain), phone,
            linkedin, country, rng.choice(LEAD_SOURCES)]


def shown_email(rng: random.Random, email: str) -> str:
    """How the same address shows up again in real files: re-cased, padded."""
    return rng.choice((email.upper(), f"  {email} ", email.capitalize(), email.title(), f" {email.upper()}"))


def build_rows() -> list[list[str]]:
    rng = random.Random(SEED)
    fakers = []
    for index, (locale, *_rest) in enumerate(MARKETS):
        fake = Faker(locale)
        fake.seed_instance(SEED + index)
        fakers.append(fake)
    companies = make_companies(rng, fakers)
    used: set[str] = set()
    leads = []
    for _ in range(N_LEADS):
        company = rng.choice(companies)
        leads.append(lead_row(rng, fakers[company.market], company, used))
    for i, value in enumerate(FORMULA_VALUES[:HOSTILE_VALID]):
        leads[rng.randrange(len(leads))][1 + i % 4] = value  # name, title or company: imported neutralised

    bad = []
    for email in INVALID_EMAILS:
        bad.append([email, *lead_row(rng, fakers[0], rng.choice(companies), set())[1:]])
    for _ in range(EMPTY_EMAIL_ROWS):
        bad.append(["", *lead_row(rng, fakers[0], rng.choice(companies), set())[1:]])
    huge = lead_row(rng, fakers[0], rng.choice(companies), used)
    huge[3] = "Head of Sales " * 1_428 + "xxxxxxxx"  # 20,000 characters
    bad.append(huge)

    rows = leads + bad
    rng.shuffle(rows)
    for source in rng.sample(leads, N_DUPLICATES):
        after = next(i for i, row in enumerate(rows) if row is source)
        rows.insert(rng.randint(after + 1, len(rows)), [shown_email(rng, source[0]), *source[1:]])
    return rows


def render() -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(build_rows())
    return buffer.getvalue()


def main() -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8", newline="")
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
