"""Which A/B variant of a sequence step a lead gets: a stable hash, the same answer on every worker and every run."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

OWN = "A"  # the step's own subject and body; other variants are rows of `step_variants`
LABEL = re.compile(r"[A-Z][A-Z0-9]{0,7}")  # the database's CHECK (shared.models.VARIANT_LABEL) says the same


def variant_for(lead_id: int, campaign_id: int, step: int, labels: Iterable[str]) -> str:
    """The label among `labels` that this lead gets at this step: sha256 of "campaign:lead:step", modulo the
    number of labels, over the labels sorted (so the order they are given in does not matter)."""
    ordered = sorted(set(labels))
    if not ordered:
        raise ValueError("no variants to choose from")
    digest = hashlib.sha256(f"{campaign_id}:{lead_id}:{step}".encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
