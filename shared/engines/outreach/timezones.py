"""Lead timezones and sending windows (pure): resolved once per lead, DST-correct with zoneinfo.

A lead's zone comes from, in order: an explicit IANA name, the phone number
(`phonenumbers.timezone`), the country (tzdata's zone.tab), the campaign's fallback. An answer
that names several zones with different clocks is ambiguous: we fall back and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_tz

# A week has at most this many days to look through for the next open window.
WINDOW_SEARCH_DAYS = 8
BUSINESS_WEEKDAYS = frozenset({1, 2, 3, 4, 5})  # ISO: Monday=1 … Sunday=7


@dataclass(frozen=True, slots=True)
class Resolved:
    timezone: str
    source: str  # explicit | phone | country | fallback
    note: str | None = None  # why a better source was not used (ambiguous, unknown…)


@dataclass(frozen=True, slots=True)
class Window:
    """When a campaign sends, in the lead's local time: ISO weekdays and [start_hour, end_hour)."""

    weekdays: frozenset[int]
    start_hour: int
    end_hour: int


def valid_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        zone_info(name)  # kept once valid: a phone's zones are checked for every lead
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, tuple[str, ...]]:
    zones: dict[str, list[str]] = {}
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        zones.setdefault(parts[0].upper(), []).append(parts[2])
    return {k: tuple(v) for k, v in zones.items()}


# Names people write that tzdata's iso3166.tab spells differently.
COUNTRY_ALIASES = {"united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "scotland": "GB",
                   "usa": "US", "u.s.": "US", "u.s.a.": "US", "united states of america": "US",
                   "south korea": "KR", "north korea": "KP", "uae": "AE", "czech republic": "CZ", "russia": "RU"}


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    names = dict(COUNTRY_ALIASES)
    text = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text()
    for line in text.splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        code, name = line.split("\t", 1)
        names.setdefault(name.strip().lower(), code.upper())
    return names


@lru_cache(maxsize=None)
def zone_info(name: str) -> ZoneInfo:
    """ZoneInfo, kept: its own cache holds only 8 zones strongly, and a forecast over many zones
    would otherwise read the zone files again for every lead at every step."""
    return ZoneInfo(name)


def country_code(country: str | None) -> str | None:
    """ISO 3166 alpha-2 from a code or an English name ('DE', 'Germany', 'United Kingdom'); None if unknown."""
    value = (country or "").strip()
    if not value:
        return None
    if len(value) == 2 and value.isalpha():
        return value.upper()
    return _country_names().get(value.lower())


@lru_cache(maxsize=4096)
def _one_clock(zones: tuple[str, ...], year: int = 2026) -> str | None:
    """The first zone when every zone keeps the same clock all year (Berlin/Busingen), else None.
    Kept per answer: a country's or number prefix's zones are asked about for every lead."""
    probes = [datetime(year, m, 15, 12, tzinfo=UTC) for m in (1, 4, 7, 10)]
    offsets = {tuple(p.astimezone(zone_info(z)).utcoffset() for p in probes) for z in zones}
    return zones[0] if len(offsets) == 1 else None


def resolve(*, explicit: str | None, phone: str | None, country: str | None, fallback: str) -> Resolved:
    """Where a lead's working hours are; pure, so it is resolved once and stored with its source."""
    notes: list[str] = []
    if explicit:
        if valid_zone(explicit):
            return Resolved(explicit, "explicit")
        notes.append(f"timezone {explicit!r} is not an IANA zone")
    region = country_code(country)
    if country and region is None:
        notes.append(f"country {country!r} unknown")
    if phone:
        try:
            number = phonenumbers.parse(phone, region)
        except phonenumbers.NumberParseException:
            number = None
            notes.append("phone number unparseable")
        if number is not None:
            zones = tuple(z for z in phone_tz.time_zones_for_number(number) if valid_zone(z))
            picked = _one_clock(zones) if zones else None
            if picked:
                return Resolved(picked, "phone", "; ".join(notes) or None)
            notes.append(f"phone ambiguous ({len(zones)} zones)" if zones else "phone has no zone")
    if region:
        zones = _country_zones().get(region, ())
        picked = _one_clock(zones) if zones else None
        if picked:
            return Resolved(picked, "country", "; ".join(notes) or None)
        notes.append(f"country {region} ambiguous ({len(zones)} zones)" if zones else f"country {region} has no zone")
    return Resolved(fallback, "fallback", "; ".join(notes) or None)


def is_open(now: datetime, tz: str, window: Window) -> bool:
    """Is `now` (aware) inside the window in `tz`'s local time? DST handled by zoneinfo."""
    local = now.astimezone(zone_info(tz))
    return local.isoweekday() in window.weekdays and window.start_hour <= local.hour < window.end_hour


def _local_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """`hour`:00 local on `day` as UTC. An hour that does not exist (DST gap) is the gap's end."""
    if hour >= 24:
        day, hour = day + timedelta(days=1), 0
    # In a DST gap, fold=0 reads the wall time with the offset before the jump (PEP 495), which
    # lands on the first real instant after the gap: 02:00 on spring-forward day is 03:00 new time.
    aware = datetime.combine(day, time(hour)).replace(tzinfo=zone)
    return aware.astimezone(UTC)


def next_open(now: datetime, tz: str, window: Window) -> datetime:
    """The first instant at or after `now` when the window is open in `tz`."""
    if is_open(now, tz, window):
        return now
    zone = zone_info(tz)
    local_day = now.astimezone(zone).date()
    for offset in range(WINDOW_SEARCH_DAYS):
        day = local_day + timedelta(days=offset)
        if day.isoweekday() not in window.weekdays:
            continue
        start = _local_instant(day, window.start_hour, zone)
        if start >= now:
            return start
    raise ValueError(f"window {window} never opens")  # weekdays is never empty (CHECK constraint)


def window_close(now: datetime, tz: str, window: Window) -> datetime:
    """When the window open at `now` closes (UTC)."""
    zone = zone_info(tz)
    return _local_instant(now.astimezone(zone).date(), window.end_hour, zone)


def add_delay(start: datetime, amount: int, unit: str, tz: str) -> datetime:
    """`start` plus `amount` days or business days, counted on the lead's local calendar.

    Wall-clock arithmetic in the lead's zone: 10:00 on Friday + 1 business day is 10:00 on
    Monday even when the clocks changed over the weekend.
    """
    if amount <= 0:
        return start
    zone = zone_info(tz)
    local = start.astimezone(zone).replace(tzinfo=None)
    if unit == "days":
        local += timedelta(days=amount)
    elif unit == "business_days":
        left = amount
        while left:
            local += timedelta(days=1)
            if local.isoweekday() in BUSINESS_WEEKDAYS:
                left -= 1
    else:
        raise ValueError(f"delay unit must be days or business_days, got {unit!r}")
    return local.replace(tzinfo=zone).astimezone(UTC)
