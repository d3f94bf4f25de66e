"""Lead scoring: how well a lead fits a campaign's ideal customer profile (ICP), 0..100, explained.

A campaign's `icp` JSON is parsed once into an `IcpConfig` (unknown keys are refused, naming the
field). `score_lead` is pure and cheap: it reads the lead's columns and its stored enrichment
(normalized provider keys, see `shared.integrations.providers.base.ProviderResult`) and returns a
score, a tier and a breakdown whose entries' points add up to the score exactly, each with a short
human reason. `rescore_campaign` re-applies it to a whole campaign from stored data, page by page.

Scoring model:
- Fit signals (seniority, department, title keywords, industry, company size, country, email status)
  earn a share of their weight. A signal the ICP leaves empty is "not configured" and sits out; the
  configured weights are scaled to sum to 100, so an ICP that only cares about seniority and
  industry still spreads leads over the whole range.
- Penalties (free-mail, role address, disposable domain, invalid email) subtract fixed points.
- The score is floored at 0 (an explicit "floor" entry keeps the breakdown summing to the score).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from sqlalchemy import Connection, Engine, text

from shared.db import transaction
from shared.errors import IcpError
from shared.lead_rules import classify_title, is_disposable, is_free_mail, is_role_address

BREAKDOWN_VERSION = 1
RESCORE_PAGE_SIZE = 5_000

Seniority = Literal["c_level", "vp", "director", "manager", "senior", "entry"]

# Highest first; the rank lets a near miss (manager when director is wanted) earn partial credit.
SENIORITY_RANK: dict[str, int] = {"c_level": 5, "vp": 4, "director": 3, "manager": 2, "senior": 1, "entry": 0}

_SENIORITY_ALIASES = {
    "c-level": "c_level", "c level": "c_level", "clevel": "c_level", "c_suite": "c_level", "c-suite": "c_level",
    "csuite": "c_level", "cxo": "c_level", "executive": "c_level", "owner": "c_level", "founder": "c_level",
    "vice president": "vp", "vice_president": "vp", "svp": "vp", "evp": "vp",
    "head": "director", "manager_level": "manager", "mid": "senior", "junior": "entry", "intern": "entry",
}

# Common spellings of the countries leads come from, folded onto ISO 3166 alpha-2 codes.
_COUNTRY_ALIASES = {
    "usa": "us", "u.s.": "us", "u.s.a.": "us", "united states": "us", "united states of america": "us",
    "america": "us", "uk": "gb", "u.k.": "gb", "united kingdom": "gb", "great britain": "gb",
    "england": "gb", "scotland": "gb", "wales": "gb", "northern ireland": "gb", "britain": "gb",
    "germany": "de", "deutschland": "de", "france": "fr", "canada": "ca", "australia": "au",
    "netherlands": "nl", "the netherlands": "nl", "holland": "nl", "spain": "es", "italy": "it",
    "ireland": "ie", "sweden": "se", "norway": "no", "denmark": "dk", "finland": "fi",
    "switzerland": "ch", "austria": "at", "belgium": "be", "portugal": "pt", "poland": "pl",
    "india": "in", "singapore": "sg", "japan": "jp", "brazil": "br", "mexico": "mx",
    "new zealand": "nz", "israel": "il", "united arab emirates": "ae", "uae": "ae", "south africa": "za",
}

_NUMBER = re.compile(r"\d[\d,_]*(?:\.\d+)?")
_EMAIL_STATUS_CREDIT = {"valid": 1.0, "risky": 0.5, "accept_all": 0.5, "catch_all": 0.5, "unknown": 0.25}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanySize(_Strict):
    """Employee-count range; either bound may be left open."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> CompanySize:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Weights(_Strict):
    """Fit weights (relative; scaled so the configured ones sum to 100) and penalty points."""

    seniority: int = Field(default=25, ge=0, le=100)
    department: int = Field(default=15, ge=0, le=100)
    title_keywords: int = Field(default=10, ge=0, le=100)
    industry: int = Field(default=15, ge=0, le=100)
    company_size: int = Field(default=15, ge=0, le=100)
    country: int = Field(default=10, ge=0, le=100)
    email_status: int = Field(default=10, ge=0, le=100)
    # Penalties: points taken off when the condition holds (and, where there is one, its exclude_* flag is on).
    free_mail: int = Field(default=15, ge=0, le=100)
    role_address: int = Field(default=10, ge=0, le=100)
    disposable: int = Field(default=25, ge=0, le=100)
    invalid_email: int = Field(default=30, ge=0, le=100)


class Tiers(_Strict):
    """Lowest score of each tier; anything below C is D."""

    A: int = Field(default=80, ge=0, le=100)
    B: int = Field(default=60, ge=0, le=100)
    C: int = Field(default=40, ge=0, le=100)

    @model_validator(mode="after")
    def _descending(self) -> Tiers:
        if not self.A > self.B > self.C:
            raise ValueError(f"thresholds must descend A > B > C, got A={self.A} B={self.B} C={self.C}")
        return self


def _norm(value: str) -> str:
    """Case- and separator-insensitive form used for every target and every lead value."""
    return " ".join(value.replace("_", " ").replace("-", " ").casefold().split())


def _country(value: str) -> str:
    folded = " ".join(value.casefold().split())
    return _COUNTRY_ALIASES.get(folded, folded)


def _string_list(value: Any) -> Any:
    # A single string is a common hand-written shorthand for a one-item list.
    return [value] if isinstance(value, str) else value


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything score_lead needs, precomputed once per ICP so a call does no parsing or compiling."""

    seniorities: frozenset[str]
    seniority_ranks: tuple[int, ...]
    departments: tuple[str, ...]
    title_pattern: re.Pattern[str] | None
    industries: tuple[str, ...]
    countries: frozenset[str]
    size_min: int | None
    size_max: int | None
    scale: float  # multiplies configured fit weights so they sum to 100
    configured: frozenset[str]


class IcpConfig(_Strict):
    """A campaign's ideal customer profile. Build it with `IcpConfig.parse(campaign.icp)`.

    Empty target lists mean "not configured": that signal is left out of the score.
    """

    seniorities: list[Seniority] = Field(default_factory=lambda: ["c_level", "vp", "director"])
    departments: list[str] = Field(default_factory=list)
    title_keywords: list[str] = Field(default_factory=list)
    industries: list[str] = Field(default_factory=list)
    company_size: CompanySize = Field(default_factory=CompanySize)
    countries: list[str] = Field(default_factory=list)
    exclude_free_mail: bool = True
    exclude_role_addresses: bool = True
    exclude_disposable: bool = True
    weights: Weights = Field(default_factory=Weights)
    tiers: Tiers = Field(default_factory=Tiers)

    _plan: _Plan = PrivateAttr()

    @field_validator("seniorities", mode="before")
    @classmethod
    def _seniority_aliases(cls, value: Any) -> Any:
        value = _string_list(value)
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                key = item.strip().casefold()
                item = _SENIORITY_ALIASES.get(key, key.replace("-", "_").replace(" ", "_"))
            out.append(item)
        return _dedupe(out) if all(isinstance(i, str) for i in out) else out

    @field_validator("departments", "title_keywords", "industries", "countries", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _string_list(value)

    @field_validator("departments", "title_keywords", "industries")
    @classmethod
    def _normalized(cls, value: list[str]) -> list[str]:
        return _dedupe(_norm(v) for v in value)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return _dedupe(_country(v) for v in value)

    def model_post_init(self, context: Any, /) -> None:
        self._plan = self._build_plan()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> IcpConfig:
        """Validate a campaign's ICP JSON (None or {} gives the defaults); IcpError names bad fields."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise IcpError(f"invalid ICP: expected a JSON object, got {type(raw).__name__}", ["<root>"])
        _check_limits(raw)
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise _icp_error(exc) from None

    @property
    def plan(self) -> _Plan:
        return self._plan

    def tier_for(self, score: int) -> str:
        t = self.tiers
        return "A" if score >= t.A else "B" if score >= t.B else "C" if score >= t.C else "D"

    def _build_plan(self) -> _Plan:
        configured = {"email_status"}
        for name, targets in (("seniority", self.seniorities), ("department", self.departments),
                              ("title_keywords", self.title_keywords), ("industry", self.industries),
                              ("country", self.countries)):
            if targets:
                configured.add(name)
        if self.company_size.min is not None or self.company_size.max is not None:
            configured.add("company_size")
        w = self.weights
        total = sum(getattr(w, name) for name in configured)
        keywords = sorted(self.title_keywords, key=len, reverse=True)  # longest first: report the fullest match
        pattern = (re.compile(r"\b(?:" + "|".join(_keyword_regex(k) for k in keywords) + r")\b", re.I)
                   if keywords else None)
        return _Plan(
            seniorities=frozenset(self.seniorities),
            seniority_ranks=tuple(SENIORITY_RANK[s] for s in self.seniorities),
            departments=tuple(self.departments),
            title_pattern=pattern,
            industries=tuple(self.industries),
            countries=frozenset(self.countries),
            size_min=self.company_size.min,
            size_max=self.company_size.max,
            scale=100.0 / total if total else 0.0,
            configured=frozenset(configured),
        )


def _keyword_regex(keyword: str) -> str:
    # Keywords were normalized (separators → spaces); let any run of space, '-' or '_' match between words.
    return r"[\s_-]+".join(re.escape(part) for part in keyword.split())


def _icp_error(exc: ValidationError) -> IcpError:
    fields, problems = [], []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        fields.append(path)
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown field '{path}'{_suggestion(err['loc'])}")
        else:
            problems.append(f"field '{path}': {err['msg']}")
    return IcpError("invalid ICP: " + "; ".join(problems), fields)


def _suggestion(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = IcpConfig
    for part in loc[:-1]:
        annotation = model.model_fields.get(str(part))
        nested = getattr(annotation, "annotation", None)
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return ""
        model = nested
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(model.model_fields)})"


# --- input limits ----------------------------------------------------------------------------
# An ICP is a few dozen targets. Limits keep a hostile or mistaken one (10 MB, a million keywords,
# 10**400) from costing seconds and gigabytes on every chunk that parses it.

MAX_ICP_BYTES = 64 * 1024
"""Largest ICP JSON accepted, in bytes (as stored: compact JSON)."""
MAX_ICP_LIST_ITEMS = 500
MAX_ICP_STRING_CHARS = 200
MAX_ICP_NUMBER = 10**9
"""Largest magnitude of any number in an ICP (employee counts, weights, thresholds)."""
MAX_ICP_DEPTH = 4


def load_icp_json(data: bytes | str) -> Any:
    """Parse ICP JSON text within the limits; IcpError names the problem (not a traceback)."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_ICP_BYTES:
        raise IcpError(f"invalid ICP: {size:,} bytes, the limit is {MAX_ICP_BYTES:,}", ["<root>"])

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number an ICP can hold")

    try:
        return json.loads(data, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise IcpError(f"invalid ICP: not valid JSON ({exc})", ["<root>"]) from None


def validated_icp(data: bytes | str) -> dict[str, Any]:
    """ICP JSON text, parsed within the limits and validated (`IcpConfig.parse`); IcpError names the problem."""
    raw = load_icp_json(data)
    IcpConfig.parse(raw)
    return raw


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # what a jsonb value cannot hold, even escaped


def _storable(value: str, where: str) -> None:
    if _UNSTORABLE.search(value):
        raise IcpError(f"invalid ICP: field '{where}' holds a NUL or a lone surrogate (Postgres cannot store it)",
                       [where])


def _check_limits(raw: Mapping[str, Any]) -> None:
    """Refuse an ICP beyond the limits above, naming the field; cheap (one walk, no encoding)."""
    budget = [MAX_ICP_BYTES]  # a rough size: characters of keys and strings, 8 per number

    def walk(value: Any, path: str, depth: int) -> None:
        where = path or "<root>"
        if depth > MAX_ICP_DEPTH:
            raise IcpError(f"invalid ICP: field '{where}' is nested too deeply", [where])
        if isinstance(value, bool) or value is None:
            budget[0] -= 4
        elif isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_ICP_NUMBER:
                raise IcpError(f"invalid ICP: field '{where}': number out of range "
                               f"(limit ±{MAX_ICP_NUMBER:,})", [where])
            budget[0] -= 8
        elif isinstance(value, str):
            _storable(value, where)
            if len(value) > MAX_ICP_STRING_CHARS:
                raise IcpError(f"invalid ICP: field '{where}': a value of {len(value):,} characters "
                               f"(limit {MAX_ICP_STRING_CHARS})", [where])
            budget[0] -= len(value) + 2
        elif isinstance(value, Mapping):
            if len(value) > MAX_ICP_LIST_ITEMS:
                raise IcpError(f"invalid ICP: field '{where}' has {len(value):,} keys", [where])
            for key, item in value.items():
                budget[0] -= len(str(key)) + 4
                _storable(str(key), where)
                walk(item, f"{path}.{key}" if path else str(key), depth + 1)
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_ICP_LIST_ITEMS:
                raise IcpError(f"invalid ICP: field '{where}' has {len(value):,} items "
                               f"(limit {MAX_ICP_LIST_ITEMS})", [where])
            for index, item in enumerate(value):
                walk(item, f"{where}.{index}", depth + 1)
        if budget[0] < 0:
            raise IcpError(f"invalid ICP: larger than {MAX_ICP_BYTES:,} bytes", ["<root>"])

    walk(raw, "", 0)


# --- scoring ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: int
    tier: str
    breakdown: dict[str, Any]


@dataclass(slots=True)
class _Fit:
    signal: str
    weight: int
    credit: float  # 0..1 share of the weight earned
    reason: str


def score_lead(lead: Mapping[str, Any], enrichment: Mapping[str, Any] | None, icp: IcpConfig) -> ScoreResult:
    """Score one lead against an ICP. Pure and deterministic; missing data earns nothing, never raises.

    `lead` holds the lead's columns (email, title, country, …); `enrichment` the stored normalized
    provider data (may be empty). Enrichment wins where both have a value.
    """
    enrichment = enrichment or {}
    plan = icp.plan
    w = icp.weights
    title = _text(enrichment.get("title")) or _text(lead.get("title"))
    fits = [
        _seniority(plan, w.seniority, _text(enrichment.get("seniority")), title),
        _department(plan, w.department, _text(enrichment.get("department")), title),
        _title_keywords(plan, w.title_keywords, title),
        _industry(plan, w.industry, _text(enrichment.get("industry"))),
        _company_size(plan, w.company_size, enrichment.get("company_size")),
        _country_fit(plan, w.country, _text(enrichment.get("country")) or _text(lead.get("country"))),
        _email_status(w.email_status, _text(enrichment.get("email_status"))),
    ]
    entries = _allocate(fits, plan)
    entries.extend(_penalties(icp, lead, enrichment))
    total = sum(e["points"] for e in entries)
    if total < 0:
        # Penalties can outweigh fit; say so rather than let the breakdown stop adding up.
        entries.append({"signal": "floor", "kind": "adjustment", "weight": 0, "points": -total,
                        "reason": "score cannot go below 0"})
        total = 0
    tier = icp.tier_for(total)
    return ScoreResult(total, tier, {"version": BREAKDOWN_VERSION, "score": total, "tier": tier,
                                     "signals": entries})


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _seniority(plan: _Plan, weight: int, given: str | None, title: str | None) -> _Fit:
    if not plan.seniorities:
        return _Fit("seniority", weight, 0.0, "no target seniority set; not scored")
    level, source = (_seniority_level(given) if given else None), ""
    if level is None and title:
        level, source = _seniority_from_title(title), " (from title)"
    if level is None:
        return _Fit("seniority", weight, 0.0, "seniority unknown")
    label = level.replace("_", "-") if level == "c_level" else level
    if level in plan.seniorities:
        return _Fit("seniority", weight, 1.0, f"seniority {label}{source} matches target")
    distance = min(abs(SENIORITY_RANK[level] - r) for r in plan.seniority_ranks)
    if distance == 1:
        return _Fit("seniority", weight, 0.5, f"seniority {label}{source} is one level from target")
    return _Fit("seniority", weight, 0.0, f"seniority {label}{source} is not a target")


def _seniority_level(value: str) -> str | None:
    key = value.casefold()
    key = _SENIORITY_ALIASES.get(key, key.replace("-", "_").replace(" ", "_"))
    return key if key in SENIORITY_RANK else None


def _seniority_from_title(title: str) -> str | None:
    # The same title rules the providers use (shared.lead_rules), so a lead scores as it was enriched.
    return classify_title(title)[0]


def _department(plan: _Plan, weight: int, given: str | None, title: str | None) -> _Fit:
    if not plan.departments:
        return _Fit("department", weight, 0.0, "no target department set; not scored")
    if given:
        dept = _norm(given)
        for target in plan.departments:
            if target in dept:
                return _Fit("department", weight, 1.0, f"department {dept} matches target")
        return _Fit("department", weight, 0.0, f"department {dept} is not a target")
    if title:
        dept = classify_title(title)[1]
        if dept is not None and _norm(dept) in plan.departments:
            return _Fit("department", weight, 1.0, f"department {_norm(dept)} (from title) matches target")
        return _Fit("department", weight, 0.0, "department unknown; title names no target department")
    return _Fit("department", weight, 0.0, "department unknown")


def _title_keywords(plan: _Plan, weight: int, title: str | None) -> _Fit:
    if plan.title_pattern is None:
        return _Fit("title_keywords", weight, 0.0, "no title keywords set; not scored")
    if not title:
        return _Fit("title_keywords", weight, 0.0, "title unknown")
    match = plan.title_pattern.search(title)
    if match:
        return _Fit("title_keywords", weight, 1.0, f"title contains '{match.group(0).lower()}'")
    return _Fit("title_keywords", weight, 0.0, "title has no target keyword")


def _industry(plan: _Plan, weight: int, given: str | None) -> _Fit:
    if not plan.industries:
        return _Fit("industry", weight, 0.0, "no target industry set; not scored")
    if not given:
        return _Fit("industry", weight, 0.0, "industry unknown")
    industry = _norm(given)
    for target in plan.industries:
        # Containment, so a target "software" covers a provider's "computer software".
        if target in industry:
            return _Fit("industry", weight, 1.0, f"industry {industry} matches target")
    return _Fit("industry", weight, 0.0, f"industry {industry} is not a target")


def _company_size(plan: _Plan, weight: int, raw: Any) -> _Fit:
    if plan.size_min is None and plan.size_max is None:
        return _Fit("company_size", weight, 0.0, "no company size range set; not scored")
    size = _employees(raw)
    if size is None:
        return _Fit("company_size", weight, 0.0, "company size unknown")
    if plan.size_min is not None and size < plan.size_min:
        return _Fit("company_size", weight, 0.0, f"company size {size} below min {plan.size_min}")
    if plan.size_max is not None and size > plan.size_max:
        return _Fit("company_size", weight, 0.0, f"company size {size} above max {plan.size_max}")
    return _Fit("company_size", weight, 1.0, f"company size {size} within range")


def _employees(raw: Any) -> int | None:
    """Employee count from an int, a float or a provider string like "1,200", "51-200" or "10000+"."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw >= 0 else None
    if isinstance(raw, str):
        numbers = [float(n.replace(",", "").replace("_", "")) for n in _NUMBER.findall(raw)[:2]]
        if numbers:
            # A band ("51-200") stands for its midpoint.
            return int(sum(numbers) / len(numbers))
    return None


def _country_fit(plan: _Plan, weight: int, given: str | None) -> _Fit:
    if not plan.countries:
        return _Fit("country", weight, 0.0, "no target country set; not scored")
    if not given:
        return _Fit("country", weight, 0.0, "country unknown")
    country = _country(given)
    if country in plan.countries:
        return _Fit("country", weight, 1.0, f"country {country.upper()} matches target")
    return _Fit("country", weight, 0.0, f"country {country.upper()} is not a target")


def _email_status(weight: int, status: str | None) -> _Fit:
    if not status:
        return _Fit("email_status", weight, 0.0, "email not verified")
    status = status.casefold()
    credit = _EMAIL_STATUS_CREDIT.get(status, 0.0)
    if status == "valid":
        reason = "email verified valid"
    elif status == "invalid":
        reason = "email invalid"
    else:
        reason = f"email status {status}"
    return _Fit("email_status", weight, credit, reason)


def _allocate(fits: list[_Fit], plan: _Plan) -> list[dict[str, Any]]:
    """Integer points per fit signal that add up to the rounded exact total (largest remainder)."""
    exact = [f.weight * plan.scale * f.credit if f.signal in plan.configured else 0.0 for f in fits]
    target = min(100, math.floor(sum(exact) + 0.5 + 1e-9))
    points = [math.floor(x + 1e-9) for x in exact]
    short = target - sum(points)
    # Ties go to the earlier signal, so the result never depends on anything but the inputs.
    order = sorted(range(len(fits)), key=lambda i: (-(exact[i] - points[i]), i))
    for i in order[:max(short, 0)]:
        points[i] += 1
    return [
        {"signal": f.signal, "kind": "fit", "weight": f.weight,
         "max": round(f.weight * plan.scale, 2) if f.signal in plan.configured else 0.0,
         "points": p, "reason": f.reason}
        for f, p in zip(fits, points, strict=True)
    ]


def _penalties(icp: IcpConfig, lead: Mapping[str, Any], enrichment: Mapping[str, Any]) -> list[dict[str, Any]]:
    email = (_text(lead.get("email")) or _text(enrichment.get("email")) or "").casefold()
    local, _, domain = email.rpartition("@")
    w = icp.weights
    status = (_text(enrichment.get("email_status")) or "").casefold()
    return [
        _penalty("free_mail", w.free_mail, icp.exclude_free_mail,
                 _flag(enrichment.get("is_free_mail"), bool(domain) and is_free_mail(domain)),
                 "free-mail address", "not a free-mail address", "free-mail allowed"),
        _penalty("role_address", w.role_address, icp.exclude_role_addresses,
                 _flag(enrichment.get("is_role_address"), bool(local) and is_role_address(local)),
                 "role address", "not a role address", "role addresses allowed"),
        _penalty("disposable", w.disposable, icp.exclude_disposable,
                 _flag(enrichment.get("is_disposable"), bool(domain) and is_disposable(domain)),
                 "disposable domain", "not a disposable domain", "disposable domains allowed"),
        _penalty("invalid_email", w.invalid_email, True, status == "invalid",
                 "email invalid", "email not flagged invalid", "invalid emails not penalized"),
    ]


def _flag(given: Any, fallback: bool) -> bool:
    # A provider's explicit answer wins; our own lists only fill the gap.
    return given if isinstance(given, bool) else fallback


def _penalty(signal: str, weight: int, enabled: bool, hit: bool, hit_reason: str, miss_reason: str,
             off_reason: str) -> dict[str, Any]:
    if not enabled:
        points, reason = 0, off_reason
    elif hit:
        points, reason = -weight, f"{hit_reason} \u2212{weight}"
    else:
        points, reason = 0, miss_reason
    return {"signal": signal, "kind": "penalty", "weight": weight, "points": points, "reason": reason}


# --- re-scoring from stored data ---------------------------------------------------------------

_PAGE = text(
    """
    SELECT id, email, title, country, company_name, company_domain, enrichment
    FROM leads
    WHERE campaign_id = :campaign AND id > :after
    ORDER BY id
    LIMIT :limit
    FOR NO KEY UPDATE
    """
)

_WRITE = text(
    """
    UPDATE leads AS l
    SET score = v.score, score_tier = v.tier, score_breakdown = CAST(v.breakdown AS jsonb),
        scored_at = now(), updated_at = now()
    FROM unnest(CAST(:ids AS bigint[]), CAST(:scores AS int[]), CAST(:tiers AS text[]),
                CAST(:breakdowns AS text[])) AS v(id, score, tier, breakdown)
    WHERE l.id = v.id
    """
)


def rescore_campaign(engine: Engine, campaign_id: int, *, page_size: int = RESCORE_PAGE_SIZE) -> int:
    """Re-score every lead of a campaign from stored data (no provider calls); returns how many.

    Leads with enrichment are scored from it (their columns fill gaps); leads without are scored
    from their columns alone. One transaction per page: the page's rows are locked while scored, so
    a concurrent enrichment write cannot be overwritten by a score computed from older data, and
    no lock is held across the whole campaign.
    """
    with transaction(engine) as conn:
        icp = load_icp(conn, campaign_id)
    done, after = 0, 0
    while True:
        with transaction(engine) as conn:
            rows = conn.execute(_PAGE, {"campaign": campaign_id, "after": after, "limit": page_size}).mappings().all()
            if not rows:
                return done
            _write_page(conn, rows, icp)
        done += len(rows)
        after = rows[-1]["id"]
        if len(rows) < page_size:
            return done


def load_icp(conn: Connection, campaign_id: int) -> IcpConfig:
    """The campaign's parsed ICP; LookupError when there is no such campaign."""
    row = conn.execute(text("SELECT icp FROM campaigns WHERE id = :c"), {"c": campaign_id}).first()
    if row is None:
        raise LookupError(f"campaign {campaign_id} does not exist")
    return IcpConfig.parse(row.icp)


def _write_page(conn: Connection, rows: Sequence[Mapping[str, Any]], icp: IcpConfig) -> None:
    results = [score_lead(row, row["enrichment"] or {}, icp) for row in rows]
    conn.execute(_WRITE, {
        "ids": [row["id"] for row in rows],
        "scores": [r.score for r in results],
        "tiers": [r.tier for r in results],
        "breakdowns": [json.dumps(r.breakdown, ensure_ascii=False, separators=(",", ":")) for r in results],
    })
def set_lead_title(conn: Connection, lead_id: int, title: str | None) -> None:
    conn.execute(text("UPDATE leads SET title = :t, updated_at = now() WHERE id = :l"), {"t": title, "l": lead_id})
