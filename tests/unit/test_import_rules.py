"""Lead-import rules without a database: header mapping, domains, names, decoding, safe cells."""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import pytest
from faker import Faker
from hypothesis import given
from hypothesis import strategies as st
from nameparser import HumanName

from shared.csvsafe import is_dangerous, safe_cell
from shared.engines.leads.importer import (
    decode_bytes,
    email_problem,
    header_key,
    map_headers,
    normalize_domain,
    parse_rows,
    peek_header,
    read_header,
    sniff_delimiter,
    split_full_name,
)
from shared.errors import LeadImportError, MissingEmailColumn

ROOT = Path(__file__).resolve().parents[2]


# -- header mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Email", "email"), ("E-mail", "email"), ("EMAIL ADDRESS", "email"), ("work_email", "email"),
        (" e-mail address ", "email"),
        ("First Name", "first_name"), ("firstname", "first_name"), ("first", "first_name"),
        ("Given Name", "first_name"),
        ("Last Name", "last_name"), ("Surname", "last_name"), ("family-name", "last_name"),
        ("Full Name", "full_name"), ("name", "full_name"),
        ("Title", "title"), ("Job Title", "title"), ("position", "title"), ("Role", "title"),
        ("Company", "company_name"), ("Company Name", "company_name"), ("Organization", "company_name"),
        ("Account Name", "company_name"),
        ("Domain", "company_domain"), ("Website", "company_domain"), ("Company Domain", "company_domain"),
        ("company website", "company_domain"), ("URL", "company_domain"),
        ("Phone", "phone"), ("Phone Number", "phone"), ("Mobile", "phone"),
        ("LinkedIn", "linkedin_url"), ("LinkedIn URL", "linkedin_url"), ("Person Linkedin Url", "linkedin_url"),
        ("Country", "country"),
    ],
)
def test_header_variants_map_to_lead_fields(header, field):
    assert map_headers([header]).fields == {field: (0,)}


def test_header_key_ignores_case_spaces_and_punctuation():
    assert header_key("  E-Mail_Address!") == header_key("email address") == "emailaddress"


def test_unknown_columns_are_listed_and_same_field_columns_coalesce():
    cmap = map_headers(["Email", "Lead Source", "Work Email", "", "Notes"])
    assert cmap.fields == {"email": (0, 2)}
    assert cmap.unknown == ("Lead Source", "(column 4, no name)", "Notes")


def test_linkedin_url_is_not_mistaken_for_the_company_website():
    assert map_headers(["LinkedIn URL", "URL"]).fields == {"linkedin_url": (0,), "company_domain": (1,)}


def test_missing_email_column_names_the_columns_found():
    with pytest.raises(MissingEmailColumn) as err:
        read_header("Name,Company\nJane Doe,Acme\n")
    assert "'Name', 'Company'" in str(err.value)


def test_headerless_file_gets_a_hint():
    with pytest.raises(MissingEmailColumn, match="looks like data"):
        read_header("jane@acme.com,Jane\nbob@acme.com,Bob\n")


def test_empty_file_has_no_email_column():
    with pytest.raises(MissingEmailColumn, match="none"):
        read_header("\n\n")


def test_a_column_map_names_the_field_of_an_unknown_column_and_can_drop_a_known_one():
    cmap = map_headers(["Contact", "Lead Source", "Company"], {0: "email", 2: None})
    assert cmap.fields == {"email": (0,)}
    assert cmap.unknown == ("Lead Source", "Company")
    header = read_header("Contact;Who\njane@acme.com;Jane Doe\n", {0: "email", 1: "full_name"})
    assert header.column_map.fields == {"email": (0,), "full_name": (1,)}
    assert [values[:3] for _line, values, _fields in parse_rows(header, "utf-8").valid] == [
        ("jane@acme.com", "Jane", "Doe")]


@pytest.mark.parametrize(("overrides", "message"), [({5: "email"}, "there is no column 6"),
                                                    ({0: "password"}, "'password' is not a lead field"),
                                                    ({-1: "email"}, "there is no column 0")])
def test_a_column_map_naming_no_column_or_no_field_is_refused(overrides, message):
    with pytest.raises(LeadImportError, match=message):
        read_header("Contact,Who\njane@acme.com,Jane\n", overrides)


def test_peek_header_maps_a_file_without_an_email_column_and_refuses_an_empty_one(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_bytes("\ufeffContact;Nom\njane@acme.com;Jane\n".encode("utf-8"))
    cmap = peek_header(path)
    assert cmap.header == ("Contact", "Nom") and cmap.fields == {} and cmap.unknown == ("Contact", "Nom")
    path.write_text("\n\n")
    with pytest.raises(MissingEmailColumn):
        peek_header(path)


# -- domains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("acme.com", "acme.com"),
        ("https://www.Acme.com/about?x=1", "acme.com"),
        ("http://acme.com:8080", "acme.com"),
        ("www.acme.co.uk", "acme.co.uk"),
        ("https://blog.shop.acme.co.uk/path#frag", "acme.co.uk"),
        ("ACME.IO/", "acme.io"),
        ("  acme.de  ", "acme.de"),
        ("jane@acme.com", "acme.com"),
        ("bücher.de", "bücher.de"),
        ("localhost", None),
        ("192.168.0.1", None),
        ("n/a", None),
        ("", None),
        ("=cmd.com", None),
        ("acme", None),
    ],
)
def test_normalize_domain(raw, domain):
    assert normalize_domain(raw) == domain


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Jane Doe", "Jane", "Doe"),
        ("Dr. Jane Q. Doe Jr.", "Jane", "Doe"),
        ("Doe, Jane", "Jane", "Doe"),
        ("Jan van der Berg", "Jan", "van der Berg"),
        ("Madonna", "Madonna", None),
        ("Mary-Jane O'Neil", "Mary-Jane", "O'Neil"),
    ],
)
def test_split_full_name(full, first, last):
    assert split_full_name(full) == (first, last)


def test_fast_name_split_agrees_with_nameparser():
    fake = Faker(["en_US", "de_DE", "fr_FR", "es_ES", "nl_NL"])
    fake.seed_instance(7)
    for _ in range(2000):
        full = f"{fake.first_name()} {fake.last_name()}"
        parsed = HumanName(full)
        assert split_full_name(full) == (parsed.first or None, parsed.last or None), full


# -- safe cells -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=cmd()", "cmd()"),
        ("+1", "1"),
        ("-2+3", "2+3"),
        ("@SUM(A1:A9)", "SUM(A1:A9)"),
        ("=+-@=HYPERLINK(\"x\")", "HYPERLINK(\"x\")"),
        ("\t=cmd()", "cmd()"),
        ("\rfoo", "foo"),
        ("  =cmd()", "cmd()"),
        ("+1+cmd|' /C calc'!A0", "1+cmd|' /C calc'!A0"),
        ("=", ""),
        ("Acme", "Acme"),
        ("  Acme", "  Acme"),
        ("a=b", "a=b"),
        ("", ""),
        ("+44 20 7946 0958", "+44 20 7946 0958"),
        ("+1 (415) 555-0100 ext 12", "+1 (415) 555-0100 ext 12"),
        ("\t+44 20 7946 0958", "+44 20 7946 0958"),
        ("+1-800-CALL-NOW", "1-800-CALL-NOW"),
    ],
)
def test_safe_cell(value, safe):
    assert safe_cell(value) == safe
    assert safe_cell(safe) == safe  # idempotent: export may apply it again
    assert not is_dangerous(safe)


@pytest.mark.parametrize("value", [None, 0, 85, -0.5, 12.25])
def test_safe_cell_passes_non_strings_through(value):
    assert safe_cell(value) == value


@given(st.text())
def test_safe_cell_output_is_never_dangerous_and_stable(value):
    safe = safe_cell(value)
    assert not is_dangerous(safe)
    assert safe_cell(safe) == safe


# -- emails -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["=cmd()@acme.com", "+1@acme.com", "-a@acme.com", "@SUM(1)@acme.com", "\tx@acme.com"])
def test_email_starting_with_a_formula_character_is_invalid(raw):
    email, reason = email_problem(raw)
    assert email is None and "formula" in reason


def test_email_is_normalized_or_explained():
    assert email_problem("  Jane.Doe@ACME.com ") == ("jane.doe@acme.com", None)
    assert email_problem("")[1] == "email is empty"
    assert "@" in email_problem("jane.acme.com")[1]
    assert email_problem("jane@acme")[0] is None


# -- decoding and delimiters ------------------------------------------------------------------


def test_decode_utf8_with_and_without_bom():
    assert decode_bytes("email,name\nx@y.com,Zoë\n".encode()) == ("email,name\nx@y.com,Zoë\n", "utf-8")
    assert decode_bytes(b"\xef\xbb\xbfemail\n") == ("email\n", "utf-8-sig")


def test_decode_falls_back_to_cp1252_line_by_line():
    data = "email,name\n".encode() + "a@b.com,Zoë\n".encode() + b"c@d.com,Ren\xe9 \x80\n"
    text, encoding = decode_bytes(data)
    assert text.splitlines() == ["email,name", "a@b.com,Zoë", "c@d.com,René €"]
    assert encoding == "utf-8+cp1252"


def test_decode_never_fails():
    text, encoding = decode_bytes(b"email\n\x81\x8d\x8f\x90\x9d@x.com\n")
    assert encoding == "latin-1" and text.startswith("email\n")


def test_decode_utf16_with_bom():
    assert decode_bytes("email\tname\nx@y.com\tZoë\n".encode("utf-16")) == ("email\tname\nx@y.com\tZoë\n", "utf-16")


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [("Email,First Name,Company\n", ","), ("Email;First Name;Company\n", ";"), ("Email\tFirst\tCompany\n", "\t"),
     ('"Company, Inc";Email;Name\n', ";"), ("Email\n", ",")],
)
def test_sniff_delimiter(line, delimiter):
    assert sniff_delimiter(line) == delimiter


def test_excel_sep_line_sets_the_delimiter():
    header = read_header("sep=;\nEmail;Name\nx@y.com;Jane\n")
    assert header.delimiter == ";" and header.next_line == 3


# -- row parsing ------------------------------------------------------------------------------


def _parse(text: str):
    return parse_rows(read_header(text), "utf-8")


def test_line_numbers_are_physical_and_multiline_values_stay_one_row():
    parsed = _parse('Email,Company\n\na@x.com,"Acme\nSuite 4"\nnope,Beta\n')
    assert [line for line, _, _ in parsed.valid] == [3]
    assert parsed.valid[0][1][4] == "Acme Suite 4"  # one row, and its value one line (issue 17)
    assert [(line, reason[:13]) for line, reason, _ in parsed.rejected] == [(5, "invalid email")]


def test_unclosed_quote_does_not_swallow_the_following_rows():
    text = 'Email,Name,Company\na@x.com,"Ann,Acme\nb@x.com,Bob,Beta\nc@x.com,Cy,Corp\n'
    parsed = _parse(text)
    assert [line for line, _, _ in parsed.valid] == [3, 4]
    assert parsed.rejected[0][:2] == (2, "unclosed quote: its value ran into the next lines, "
                                      "which were read again one by one")


def test_short_rows_are_fine_and_extra_values_are_rejected():
    parsed = _parse("Email,Name,Company\na@x.com\nb@x.com,Bob,Beta,,\nc@x.com,Cy,Corp,oops\n")
    assert [line for line, _, _ in parsed.valid] == [2, 3]
    assert parsed.rejected[0][0] == 4 and "4 values but the header has 3" in parsed.rejected[0][1]


def test_huge_field_rejects_only_its_row_and_names_the_column():
    csv.field_size_limit(16 * 1024 * 1024)
    parsed = _parse(f"Email,Notes\na@x.com,{'x' * 20_000}\nb@x.com,ok\n")
    assert [line for line, _, _ in parsed.valid] == [3]
    assert parsed.rejected[0][:2] == (2, "value in column 'Notes' is 20,000 characters (limit 10,000)")


def test_row_the_csv_module_cannot_read_is_rejected_and_reading_goes_on():
    previous = csv.field_size_limit(50)
    try:
        parsed = _parse(f"Email,Notes\na@x.com,{'x' * 60}\nb@x.com,ok\n")
    finally:
        csv.field_size_limit(previous)
    assert [line for line, _, _ in parsed.valid] == [3]
    assert parsed.rejected[0][:2] == (2, "unreadable row: field larger than field limit (50)")


def test_blank_lines_and_empty_rows_are_not_rows():
    parsed = _parse("Email,Name\n\n , \n,,\na@x.com,A\n\n")
    assert parsed.total_rows == 1 and [line for line, _, _ in parsed.valid] == [5]


# -- the sample file --------------------------------------------------------------------------


def test_sample_leads_csv_is_what_the_generator_makes():
    spec = importlib.util.spec_from_file_location("make_sample_leads", ROOT / "bench" / "make_sample_leads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert rendered == module.render()  # deterministic
    assert (ROOT / "shared" / "data" / "sample_leads.csv").read_text(encoding="utf-8") == rendered
    rows = list(csv.reader(io.StringIO(rendered)))
    assert 3000 < len(rows) < 3300
