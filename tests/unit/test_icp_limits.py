"""ICP input limits: an oversized, overlong or out-of-range ICP is refused naming the field, cheaply."""

from __future__ import annotations

import json

import pytest

from shared.engines.leads.scoring import MAX_ICP_BYTES, MAX_ICP_LIST_ITEMS, MAX_ICP_STRING_CHARS, IcpConfig, load_icp_json
from shared.errors import IcpError


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"company_size": {"min": 10**400}}, "company_size.min"),
        ({"company_size": {"max": float("inf")}}, "company_size.max"),
        ({"company_size": {"max": 2 * 10**9}}, "company_size.max"),
        ({"weights": {"seniority": -(10**12)}}, "weights.seniority"),
        ({"title_keywords": ["vp"] * (MAX_ICP_LIST_ITEMS + 1)}, "title_keywords"),
        ({"industries": ["x" * (MAX_ICP_STRING_CHARS + 1)]}, "industries.0"),
        ({"countries": [[[[["deep"]]]]]}, "countries.0.0.0.0"),
        ({"industries": ["y" * MAX_ICP_STRING_CHARS] * MAX_ICP_LIST_ITEMS}, "<root>"),  # 100 KB in total
        ({"departments": ["sa\x00les"]}, "departments.0"),  # jsonb holds no NUL, not even as \u0000
        ({"industries": ["\ud800"]}, "industries.0"),  # nor a lone surrogate
        ({"company_size": {"m\x00in": 1}}, "company_size"),  # a key is stored too
    ],
)
def test_out_of_limit_icps_are_refused_naming_the_field(raw, field):
    with pytest.raises(IcpError) as refused:
        IcpConfig.parse(raw)
    assert refused.value.fields == (field,)
    assert field in str(refused.value) or field == "<root>"


def test_json_text_limits():
    with pytest.raises(IcpError, match=f"limit is {MAX_ICP_BYTES:,}"):
        load_icp_json(b" " * (MAX_ICP_BYTES + 1))
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(IcpError, match="not a number an ICP can hold"):
            load_icp_json(f'{{"company_size": {{"min": {constant}}}}}')
    with pytest.raises(IcpError, match="company_size.min"):
        IcpConfig.parse(load_icp_json('{"company_size": {"min": 1e400}}'))
    with pytest.raises(IcpError, match="not valid JSON"):
        load_icp_json("[" * 60_000)  # deep nesting: RecursionError inside json, still one line


def test_a_realistic_icp_is_well_within_the_limits():
    icp = {"seniorities": ["c_level", "vp", "director"], "departments": ["sales", "marketing"],
           "title_keywords": [f"keyword {i}" for i in range(200)], "industries": ["software"] * 50,
           "company_size": {"min": 50, "max": 5000}, "countries": ["US", "GB", "DE"],
           "weights": {"seniority": 30}, "tiers": {"A": 85, "B": 65, "C": 45}}
    assert len(json.dumps(icp)) < MAX_ICP_BYTES
    assert IcpConfig.parse(load_icp_json(json.dumps(icp))).company_size.max == 5000
