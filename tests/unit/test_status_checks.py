"""The models' CHECK constraints on enum-backed columns list exactly the enum's values (shared.status)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint

from shared.models import Base
from shared.status import values
from tests.enum_columns import ENUM_COLUMNS, listed_values, own_lists


def _model_lists() -> dict[tuple[str, str], frozenset[str]]:
    return own_lists([(table.name, str(c.name), str(c.sqltext)) for table in Base.metadata.tables.values()
                      for c in table.constraints if isinstance(c, CheckConstraint)])


def test_every_listed_column_is_enum_backed_and_agrees_with_its_enum():
    found = _model_lists()
    assert set(found) == set(ENUM_COLUMNS)
    for key, enum in ENUM_COLUMNS.items():
        assert found[key] == frozenset(values(enum)), f"{key}: CHECK {sorted(found[key])}, enum {values(enum)}"


def test_the_parser_reads_both_spellings():
    assert listed_values("status IN ('a', 'b''c')") == {"status": frozenset({"a", "b'c"})}
    pg = "CHECK (((match_kind IS NULL) OR (match_kind = ANY (ARRAY['verp'::text, 'message_id'::text]))))"
    assert listed_values(pg) == {"match_kind": frozenset({"verp", "message_id"})}
