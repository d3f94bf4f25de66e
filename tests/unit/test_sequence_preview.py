"""The sequence editor's preview (pure): undefined variables kept in place and named, the strict render's
verdict beside them, and a follow-up's subject as it is sent."""

from __future__ import annotations

from shared.engines.campaigns.views import draft_preview
from shared.engines.outreach import templates
from shared.engines.outreach.templates import Marking, StepTemplate

LEAD = {"id": 7, "email": "ann@x.example", "first_name": "Ann", "company_name": None, "enrichment": {"seats": 12}}
SENDER = {"from_name": "Rita", "from_address": "rita@x.example"}


def test_marking_names_every_undefined_variable_where_it_stands():
    m = Marking()
    ctx = templates.lead_context(LEAD, SENDER)
    r = m.render(StepTemplate(1, "{{ frist_name|upper }} at {{ company_name }}",
                              "{{ enrichment.funding }} {{ enrichment.seats }} {% if title %}x{% endif %}{{ sender_name }}"),
                 ctx)
    assert m.segments(r.subject) == [("{{ frist_name }}", "frist_name"), (" at ", None),
                                     ("{{ company_name }}", "company_name")]
    assert m.segments(r.body) == [("{{ funding }}", "funding"), (" 12 Rita", None)]
    assert m.missing == ["frist_name", "company_name", "funding", "title"]  # `if title` is refused by render too


def test_lead_data_cannot_forge_a_mark():
    m = Marking()
    ctx = templates.lead_context(LEAD | {"first_name": "\x000\x00 \x0000000000000000000000\x00"}, SENDER)
    r = m.render(StepTemplate(1, "s", "{{ first_name }} {{ nope }}"), ctx)
    runs = m.segments(r.body)
    assert [name for _, name in runs if name] == ["nope"] and runs[0][0].startswith("\x000\x00")


def test_draft_preview_gives_activations_words_and_the_sent_subject():
    p = draft_preview(2, "own subject {{ x }}", "Hi {{ first_name }}", "Hello {{ first_name }}", LEAD, SENDER)
    assert p["problem"] == "lead 7 ann@x.example: step 2 needs {{ x }}"  # dry_render renders the own subject too
    assert p["subject"] == [("Re: Hello Ann", None)] and p["body"] == [("Hi Ann", None)]
    assert p["missing"] == ["x"]
    ok = draft_preview(1, "Re: {{ first_name }}", "b", None, LEAD, SENDER)
    assert ok["problem"] is None and ok["subject"] == [("Re: Ann", None)] and ok["missing"] == []
    assert draft_preview(1, "s", "{% for %}", None, LEAD, SENDER)["problem"].startswith("step 1 body: line 1:")
    assert draft_preview(3, "s", "b", "{{ oops", LEAD, SENDER)["problem"].startswith("step 1 subject: line 1:")
    too_big = draft_preview(1, "s", "{{ 'a' * 10**6 }}", None, LEAD, SENDER)
    assert "more than" in too_big["problem"] and too_big["body"] is None
    assert draft_preview(1, "s", "b", None, None, SENDER) == {"problem": None, "subject": None, "body": None,
                                                               "missing": []}
