"""`variants.variant_for`: the same lead gets the same variant every time, and leads spread evenly over the labels."""

from collections import Counter

import pytest

from shared.engines.outreach.variants import variant_for


def test_the_same_lead_step_and_campaign_always_get_the_same_variant():
    first = [variant_for(lead, 7, 1, ["A", "B", "C"]) for lead in range(200)]
    assert [variant_for(lead, 7, 1, ["C", "A", "B", "B"]) for lead in range(200)] == first  # order, repeats: no matter
    assert variant_for(5, 7, 1, ["A", "B"]) == variant_for(5, 7, 1, ("B", "A"))


def test_the_hash_is_the_documented_one():
    import hashlib
    digest = hashlib.sha256(b"7:5:2").digest()
    assert variant_for(5, 7, 2, ["A", "B", "C"]) == "ABC"[int.from_bytes(digest[:8], "big") % 3]


def test_leads_spread_evenly_and_steps_and_campaigns_draw_independently():
    counts = Counter(variant_for(lead, 3, 1, ["A", "B"]) for lead in range(2000))
    assert set(counts) == {"A", "B"} and abs(counts["A"] - counts["B"]) < 200  # within ~4.5 sigma of 1000/1000
    three = Counter(variant_for(lead, 3, 1, ["A", "B", "C"]) for lead in range(3000))
    assert all(850 < n < 1150 for n in three.values()) and len(three) == 3
    same_at_step_2 = sum(variant_for(lead, 3, 1, ["A", "B"]) == variant_for(lead, 3, 2, ["A", "B"]) for lead in range(2000))
    assert 800 < same_at_step_2 < 1200  # step 2's draw is not step 1's
    other_campaign = sum(variant_for(lead, 3, 1, ["A", "B"]) == variant_for(lead, 4, 1, ["A", "B"]) for lead in range(2000))
    assert 800 < other_campaign < 1200


def test_a_single_label_is_always_chosen_and_none_is_refused():
    assert {variant_for(lead, 1, 1, ["A"]) for lead in range(50)} == {"A"}
    with pytest.raises(ValueError):
        variant_for(1, 1, 1, [])
