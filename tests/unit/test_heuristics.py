"""The offline heuristics provider: email checks, names, company domain, title rules, confidence."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.integrations.providers import heuristics
from shared.integrations.providers.base import LeadInput, Provider
from shared.integrations.providers.heuristics import (
    HeuristicsProvider,
    classify_title,
    company_name_from_domain,
    is_disposable,
    is_free_mail,
    is_role_address,
    registered_domain,
)

provider = HeuristicsProvider()


def enrich(email: str, **fields: str | None):
    return provider.enrich(LeadInput(lead_id=1, email=email, **fields))


def test_it_is_a_free_provider():
    assert isinstance(provider, Provider)
    assert provider.name == "heuristics"
    assert provider.cost == 0


@pytest.mark.parametrize(
    "domain",
    ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com", "gmx.de", "gmx.net",
     "proton.me", "protonmail.com", "yandex.ru", "yandex.com", "mail.ru", "yahoo.co.uk", "GMAIL.COM"],
)
def test_free_mail_domains(domain):
    assert is_free_mail(domain)


@pytest.mark.parametrize("domain", ["acme.com", "stripe.com", "mail.acme.co.uk", "gmxtools.com", "bigcorp.de"])
def test_corporate_domains_are_not_free_mail(domain):
    assert not is_free_mail(domain)


def test_disposable_domains_come_from_the_blocklist():
    assert is_disposable("mailinator.com")
    assert is_disposable("guerrillamail.com")
    assert not is_disposable("acme.com")
    assert not is_disposable("gmail.com")


@pytest.mark.parametrize(
    "local_part", ["info", "sales", "support", "admin", "noreply", "no-reply", "no_reply", "do-not-reply", "hello",
                   "contact", "Billing", "careers", "sales+eu"],
)
def test_role_addresses(local_part):
    assert is_role_address(local_part)


@pytest.mark.parametrize("local_part", ["john.doe", "jdoe", "maria", "sales.person.smith"])
def test_personal_addresses(local_part):
    assert not is_role_address(local_part)


@pytest.mark.parametrize(
    ("title", "seniority", "department"),
    [
        ("CEO", "c_level", "executive"),
        ("Chief Executive Officer", "c_level", "executive"),
        ("Founder & CEO", "c_level", "executive"),
        ("Co-Founder and CTO", "c_level", "engineering"),
        ("Chief Revenue Officer", "c_level", "sales"),
        ("Chief Financial Officer", "c_level", "finance"),
        ("CFO", "c_level", "finance"),
        ("Chief Marketing Officer", "c_level", "marketing"),
        ("Chief People Officer", "c_level", "hr"),
        ("Chief Information Officer", "c_level", "it"),
        ("CISO", "c_level", "it"),
        ("COO", "c_level", "operations"),
        ("President", "c_level", "executive"),
        ("Owner", "c_level", "executive"),
        ("Managing Partner", "c_level", "executive"),
        ("Managing Director", "c_level", "executive"),
        ("VP of Sales", "vp", "sales"),
        ("Vice President, Marketing", "vp", "marketing"),
        ("SVP, Engineering", "vp", "engineering"),
        ("EVP Sales", "vp", "sales"),
        ("Head of Growth", "director", "marketing"),
        ("Head of People", "director", "hr"),
        ("Head of IT", "director", "it"),
        ("Director of Engineering", "director", "engineering"),
        ("Chief of Staff", "director", "executive"),
        ("Engineering Manager", "manager", "engineering"),
        ("Product Manager", "manager", "product"),
        ("Product Marketing Manager", "manager", "marketing"),
        ("Customer Success Manager", "manager", "support"),
        ("Operations Manager", "manager", "operations"),
        ("IT Manager", "manager", "it"),
        ("Channel Partner Manager", "manager", "sales"),
        ("Sr. Software Engineer", "senior", "engineering"),
        ("Senior Account Executive", "senior", "sales"),
        ("Staff Software Engineer", "senior", "engineering"),
        ("Principal Engineer", "senior", "engineering"),
        ("Lead Developer", "senior", "engineering"),
        ("SDR", "entry", "sales"),
        ("BDR", "entry", "sales"),
        ("Account Executive", "entry", "sales"),
        ("Business Development Representative", "entry", "sales"),
        ("Software Engineer", "entry", "engineering"),
        ("Junior Developer", "entry", "engineering"),
        ("Marketing Intern", "entry", "marketing"),
        ("Executive Assistant to the CEO", "entry", "executive"),
        ("Staff Accountant", "entry", "finance"),
        ("FP&A Analyst", "entry", "finance"),
        ("Recruiter", "entry", "hr"),
        ("Data Scientist", "entry", "engineering"),
        ("UX Designer", "entry", "product"),
    ],
)
def test_title_rules(title, seniority, department):
    assert classify_title(title) == (seniority, department)


@pytest.mark.parametrize("title", [None, "", "   ", "Nurse", "???"])
def test_unknown_titles_classify_to_nothing(title):
    assert classify_title(title) == (None, None)


def test_corporate_lead_with_name_and_title_scores_high():
    result = enrich("Jane.Doe@Mail.Acme-Robotics.io", first_name="jane", last_name="DOE", title="VP of Sales")
    assert result.outcome == "hit"
    assert result.confidence == pytest.approx(0.6)
    assert result.data == {
        "email": "jane.doe@mail.acme-robotics.io",
        "email_status": "unknown",
        "is_free_mail": False,
        "is_disposable": False,
        "is_role_address": False,
        "first_name": "Jane",
        "last_name": "Doe",
        "full_name": "Jane Doe",
        "title": "VP of Sales",
        "seniority": "vp",
        "department": "sales",
        "company_domain": "acme-robotics.io",
        "company_name": "Acme Robotics",
    }


def test_name_is_guessed_from_the_local_part_with_less_credit():
    result = enrich("john.doe@acme.com")
    assert (result.data["first_name"], result.data["last_name"]) == ("John", "Doe")
    assert result.confidence == pytest.approx(0.4)  # (0.3 valid + 0.2 corporate + 0.1 guessed name) × 2/3


def test_an_initial_gives_only_a_last_name():
    result = enrich("j.smith@acme.com")
    assert "first_name" not in result.data
    assert result.data["last_name"] == "Smith"


def test_a_single_token_local_part_is_not_a_name():
    assert "first_name" not in enrich("jdoe@acme.com").data


def test_complex_names_go_through_nameparser():
    result = enrich("x@acme.com", first_name="Dr. Mary-Jane", last_name="O'NEIL JR.")
    assert (result.data["first_name"], result.data["last_name"]) == ("Mary-Jane", "O'Neil")


def test_mixed_case_names_are_kept_as_written():
    result = enrich("x@acme.com", first_name="DeShawn", last_name="McDonald")
    assert (result.data["first_name"], result.data["last_name"]) == ("DeShawn", "McDonald")


def test_free_mail_caps_confidence_and_gives_no_company():
    result = enrich("jane.doe@gmail.com", first_name="Jane", last_name="Doe", title="CEO")
    assert result.data["is_free_mail"] is True
    assert "company_domain" not in result.data
    assert result.confidence == pytest.approx(0.4)


def test_the_leads_own_company_fields_win():
    result = enrich("jane@gmail.com", company_name="Acme Inc.", company_domain="https://www.Acme.co.uk/about")
    assert result.data["company_domain"] == "acme.co.uk"
    assert result.data["company_name"] == "Acme Inc."


def test_role_address_is_risky_and_capped():
    result = enrich("sales@acme.com", first_name="Jane", last_name="Doe", title="CEO")
    assert result.data["is_role_address"] is True
    assert result.data["email_status"] == "risky"
    assert result.confidence == pytest.approx(0.27)


def test_role_address_does_not_become_a_name():
    result = enrich("customer.service@acme.com")
    assert result.data["is_role_address"] is True
    assert "first_name" not in result.data


def test_disposable_address_is_risky_and_capped():
    result = enrich("jane.doe@mailinator.com", first_name="Jane", last_name="Doe", title="CEO")
    assert result.data["is_disposable"] is True
    assert result.data["email_status"] == "risky"
    assert result.confidence == pytest.approx(0.13)
    assert "company_domain" not in result.data


@pytest.mark.parametrize("email", ["", "   ", "not an email", "jane@", "@acme.com", "jane@@acme.com", "jane@acme"])
def test_invalid_email_is_a_miss_with_a_reason(email):
    result = enrich(email, first_name="Jane", last_name="Doe")
    assert result.outcome == "miss"
    assert result.confidence == 0.0
    assert result.data["email_status"] == "invalid"
    assert result.data["reason"]


def test_lookup_key_is_stable_and_covers_every_field():
    lead = LeadInput(1, "Jane@Acme.com", title="CEO")
    assert provider.lookup_key(lead) == provider.lookup_key(LeadInput(2, " jane@acme.com ", title="CEO"))
    assert provider.lookup_key(lead) != provider.lookup_key(LeadInput(1, "jane@acme.com", title="CTO"))
    assert provider.lookup_key(LeadInput(1, "not an email")) is not None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("mail.acme.co.uk", "acme.co.uk"), ("https://www.acme.com/about?x=1", "acme.com"), ("acme", None),
     ("", None), (None, None), ("localhost:8080", None), ("ACME.IO.", "acme.io")],
)
def test_registered_domain(host, expected):
    assert registered_domain(host) == expected


def test_company_name_from_domain():
    assert company_name_from_domain("acme-robotics.io") == "Acme Robotics"
    assert company_name_from_domain("stripe.com") == "Stripe"


def test_the_suffix_list_is_never_fetched():
    # Bundled snapshot only: a worker must never block on (or fail for) a network fetch per lead.
    assert heuristics._TLD.suffix_list_urls == ()
    assert heuristics._TLD.fallback_to_snapshot


_text = st.one_of(st.none(), st.text(max_size=60))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    email=st.one_of(st.text(max_size=80), st.emails()),
    first_name=_text,
    last_name=_text,
    title=_text,
    company_name=_text,
    company_domain=_text,
    linkedin_url=_text,
)
def test_enrich_never_raises(email, first_name, last_name, title, company_name, company_domain, linkedin_url):
    lead = LeadInput(1, email, first_name, last_name, title, company_name, company_domain, linkedin_url)
    result = provider.enrich(lead)
    assert result.outcome in ("hit", "miss")
    assert 0.0 <= result.confidence <= 1.0
    assert provider.lookup_key(lead)
    if result.outcome == "hit":
        assert result.data["email_status"] in ("valid", "invalid", "risky", "unknown")
        assert result.data.get("seniority") in (None, "c_level", "vp", "director", "manager", "senior", "entry")
