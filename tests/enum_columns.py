"""Which enum of `shared.status` each enum-backed column holds, and how to read a CHECK's list of values.

The unit test holds the models' CHECK constraints to it, the integration test the migrated
database's (pg_constraint): a column whose own CHECK (named after it) lists values must be here,
with its enum.
"""

from __future__ import annotations

import re
from enum import StrEnum

from shared import status

ENUM_COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("clients", "subscription_status"): status.Subscription,
    ("campaigns", "status"): status.CampaignStatus,
    ("leads", "status"): status.LeadStatus,
    ("batches", "status"): status.BatchStatus,
    ("batches", "kind"): status.BatchKind,
    ("work_items", "status"): status.ItemStatus,
    ("credit_ledger", "kind"): status.LedgerKind,
    ("enrichment_attempts", "outcome"): status.ProviderOutcome,
    ("mailboxes", "tls_mode"): status.TlsMode,
    ("mailboxes", "imap_tls_mode"): status.TlsMode,
    ("mailboxes", "status"): status.MailboxStatus,
    ("sequence_steps", "delay_unit"): status.DelayUnit,
    ("enrollments", "status"): status.EnrollmentStatus,
    ("messages", "status"): status.MessageStatus,
    ("suppressions", "kind"): status.SuppressionKind,
    ("inbound_messages", "source"): status.InboundSource,
    ("inbound_messages", "kind"): status.InboundKind,
    ("inbound_messages", "match_kind"): status.MatchKind,
    ("console_users", "role"): status.Role,
    ("lead_verdicts", "verdict"): status.Verdict,
}

# `status IN ('a', 'b')` (the models' text) or `(status = ANY (ARRAY['a'::text, 'b'::text]))` (Postgres's).
_LIST = re.compile(r"\(?(\w+)\)?(?:::\w+)? (?:IN \(|= ANY \(\(?ARRAY\[)((?:'(?:[^']|'')*'(?:::\w+)?(?:, )?)+)")
_VALUE = re.compile(r"'((?:[^']|'')*)'")


def listed_values(check_sql: str) -> dict[str, frozenset[str]]:
    """Each column a CHECK compares to a list of string literals, with those literals."""
    return {column: frozenset(v.replace("''", "'") for v in _VALUE.findall(values))
            for column, values in _LIST.findall(check_sql)}


def own_lists(constraints: list[tuple[str, str, str]]) -> dict[tuple[str, str], frozenset[str]]:
    """(table, column) → values for each CHECK named after the column it lists values of.

    `constraints` are (table, constraint name, CHECK text). A CHECK that lists values of a column it
    is not named after (`credit_ledger`'s delta_sign) is a rule over several columns, not the list.
    The name only has to end in the column: migration 0008 spelled console_users' names twice over.
    """
    found: dict[tuple[str, str], frozenset[str]] = {}
    for table, name, sql in constraints:
        for column, listed in listed_values(sql).items():
            if name.endswith(f"_{column}"):
                assert (table, column) not in found, f"{table}.{column} has two value lists"
                found[(table, column)] = listed
    return found
