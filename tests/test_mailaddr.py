"""mailaddr.parse_address (RELIABILITY row 44): what passes the check is exactly what renders and sends.

A table of accepted texts with the address they give, a table of refused texts with part of the reason, the
round trip of every accepted address through an ``EmailMessage`` header and aiosmtplib's envelope check, and
Hypothesis properties over arbitrary text.
"""

from __future__ import annotations

import email
import email.policy
import string
from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from aiosmtplib.email import quote_address
from hypothesis import example, given, settings
from hypothesis import strategies as st

from alertd.mailaddr import ACCEPTED, MailAddress, parse_address

LONGEST = f"a@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 56}.org"
"""254 octets, the longest address RFC 5321 allows."""

ACCEPTED_CASES = {
    "marie@example.org": ("", "marie@example.org"),
    "  marie@example.org  ": ("", "marie@example.org"),
    "<marie@example.org>": ("", "marie@example.org"),
    "Marie Dupont <marie@example.org>": ("Marie Dupont", "marie@example.org"),
    "Veille alertd <alertd@example.org>": ("Veille alertd", "alertd@example.org"),
    '"Dupont, Marie" <marie@example.org>': ("Dupont, Marie", "marie@example.org"),
    '"Marie (Dupont)" <marie@example.org>': ("Marie (Dupont)", "marie@example.org"),
    '"Team: veille; eco" <veille@example.org>': ("Team: veille; eco", "veille@example.org"),
    '"Say \\"hi\\"" <hi@example.org>': ('Say "hi"', "hi@example.org"),
    "J. Dupont <j@example.org>": ("J. Dupont", "j@example.org"),
    "Marie O'Neil <m.oneil@example.org>": ("Marie O'Neil", "m.oneil@example.org"),
    "Marie   Dupont <marie@example.org>": ("Marie Dupont", "marie@example.org"),
    "Réader Économie <reader@example.org>": ("Réader Économie", "reader@example.org"),
    "日本語 <nihon@example.jp>": ("日本語", "nihon@example.jp"),
    "=?utf-8?q?R=C3=A9ader?= <reader@example.org>": ("Réader", "reader@example.org"),
    "marie+alertd@example.org": ("", "marie+alertd@example.org"),
    "first.last@sub.example.co.uk": ("", "first.last@sub.example.co.uk"),
    "Marie@Example.ORG": ("", "Marie@Example.ORG"),
    "root@localhost": ("", "root@localhost"),
    "marie@exämple.org": ("", "marie@xn--exmple-cua.org"),
    "marie@EXÄMPLE.org": ("", "marie@xn--exmple-cua.org"),
    "Marie <marie@straße.de>": ("Marie", "marie@xn--strae-oqa.de"),
    "marie@xn--exmple-cua.org": ("", "marie@xn--exmple-cua.org"),
    f"{'a' * 64}@example.org": ("", f"{'a' * 64}@example.org"),
    LONGEST: ("", LONGEST),
}

REFUSED_CASES = {
    "": "it is empty",
    "   ": "it is empty",
    "rêader@example.org": "alertd does not use SMTPUTF8",
    "Réader <rêader@example.org>": "must be ASCII",
    "a,b@x": "more than one address",
    "a;b@x": "more than one address",
    "a@x, b@y": "more than one address",
    "a@example.org, b@example.org": "more than one address",
    "marie@example.org,": "more than one address",
    "Dupont, Marie <marie@example.org>": "a name with a comma goes in quotes",
    "team: a@example.org, b@example.org;": "group syntax",
    "team:;": "group syntax",
    "<@relay.example.org:marie@example.org>": "group syntax",
    "Marie Dupont marie@example.org": "not a valid address",
    "a@example.org b@example.org": "not a valid address",
    "Marie <a@example.org> <b@example.org>": "not a valid address",
    "Marie <marie@example.org": "missing trailing '>'",
    '"Marie <marie@example.org>': "not a valid address",
    "marie": "no '@domain' part",
    "marie@": "not a valid address",
    "@example.org": "not a valid address",
    "a@@example.org": "not a valid address",
    "marie@example": "needs a dot",
    "marie@example.org.": "not a valid address",
    "marie@-example.org": "not a valid host name",
    "marie@exa_mple.org": "not a valid host name",
    "marie@xn--zz.org": "not a valid host name",
    "marie@192.0.2.1": "last label is a number",
    "marie@[192.0.2.1]": "address literals",
    "marie@[IPv6:::1]": "address literals",
    "Marie (Dupont) <marie@example.org>": "comments in parentheses",
    "marie@example.org (Marie)": "comments in parentheses",
    '"a b"@example.org': "quoted local parts are not accepted",
    '"a..b"@example.org': "quoted local parts are not accepted",
    "a..b@example.org": "not a valid address",
    ".a@example.org": "not a valid address",
    "marie@example.org\r\nBcc: victim@example.net": "U+000D",
    "marie@example.org\nBcc: victim@example.net": "U+000A",
    "Marie\x00 <marie@example.org>": "U+0000",
    "marie@example.org\t": "U+0009",
    "Marie\x85 <marie@example.org>": "U+0085",
    "Marie\u2028Dupont <marie@example.org>": "U+2028",
    "=?utf-8?q?Marie=0D=0ABcc=3A_x@y.org?= <marie@example.org>": "cannot contain CR or LF",
    "=?utf-8?q?Marie=0ADupont?= <marie@example.org>": "cannot contain CR or LF",
    "=?utf-8?q?Marie=00Dupont?= <marie@example.org>": "non-printables",
    "=?utf-8?q?Marie=E2=80=A8Dupont?= <marie@example.org>": "U+2028",
    "=?utf-8?q?Marie=C2=85?= <marie@example.org>": "U+0085",
    "=?bogus?q?Marie?= <marie@example.org>": "Unknown charset",
    '"Marie =?utf-8?q?x?=" <marie@example.org>': "not a valid address",
    '"=?x" <marie@example.org>': "'=?'",
    f"{'a' * 65}@example.org": "longer than 64",
    "a" + LONGEST: "longer than 254",
    f"{'x' * 999}@example.org": "longer than 998",
    f"marie@{'b' * 64}.org": "not a valid host name",
}


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_CASES.items(), ids=list(ACCEPTED_CASES))
def test_accepted_text_gives_name_and_ascii_addr_spec(text: str, expected: tuple[str, str]) -> None:
    address = parse_address(text)
    assert expected == (address.display_name, address.addr_spec)


@pytest.mark.parametrize(("text", "reason"), REFUSED_CASES.items(), ids=[repr(t)[:60] for t in REFUSED_CASES])
def test_refused_text_says_why_and_what_is_accepted(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_address(text)
    message = str(refused.value)
    assert reason in message
    assert ACCEPTED in message
    assert repr(text) in message


def _unspaced(name: str) -> str:
    return "".join(name.split())


def assert_renders_and_sends(address: MailAddress) -> None:
    """As From/To of an SMTP-policy message the address serialises to ASCII, reads back, passes aiosmtplib."""
    for value in (address.header(), address.as_address()):
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = value
        message["To"] = value
        message.set_content("digest")
        raw = message.as_bytes()
        raw.decode("ascii")
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        back = email.message_from_bytes(raw, policy=email.policy.default)
        # A long non-ASCII name is folded into several encoded-words; Python's own reader (not mail clients)
        # may put spaces where they join, so names compare without whitespace. The address compares exactly.
        expected = [(_unspaced(address.display_name), address.addr_spec)]
        for header in (back["To"], back["From"]):
            assert expected == [(_unspaced(a.display_name), a.addr_spec) for a in header.addresses]
        # alertd.deliver reads the envelope recipients back with getaddresses.
        assert expected == [(_unspaced(n), a) for n, a in getaddresses([str(back["To"])])]
    assert f"<{address.addr_spec}>".encode("ascii") == quote_address(address.addr_spec).encode("ascii")
    again = parse_address(address.header())
    assert (_unspaced(address.display_name), address.addr_spec) == (
        _unspaced(again.display_name),
        again.addr_spec,
    )
    assert address == parse_address(address.text()), "the plain form reads back exactly"


@pytest.mark.parametrize("text", ACCEPTED_CASES, ids=list(ACCEPTED_CASES))
def test_accepted_address_renders_into_a_message_and_smtp_envelope(text: str) -> None:
    assert_renders_and_sends(parse_address(text))


def test_header_encodes_a_non_ascii_name_and_keeps_an_ascii_one_readable() -> None:
    assert (
        "=?utf-8?q?R=C3=A9ader?= <reader@example.org>"
        == parse_address("Réader <reader@example.org>").header()
    )
    assert (
        '"Dupont, Marie" <marie@example.org>' == parse_address('"Dupont, Marie" <marie@example.org>').header()
    )
    assert "marie@example.org" == parse_address("marie@example.org").header()


def test_long_non_ascii_name_is_folded_into_short_lines() -> None:
    address = parse_address(f"{'Réader ' * 20}<reader@example.org>")
    message = EmailMessage(policy=email.policy.SMTP)
    message["To"] = address.header()
    assert "\n" not in address.header()
    assert all(len(line) <= 78 for line in message.as_bytes().split(b"\r\n"))


# --- Hypothesis -------------------------------------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
local_parts = st.lists(st.text(ATEXT, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True) | st.sampled_from(
    ["exämple", "straße", "日本", "xn--exmple-cua", "EXAMPLE", "ｅｘａｍｐｌｅ"]
)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda parts: ".".join([*parts, "org"])) | st.just(
    "localhost"
)
addr_specs = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
names = st.text(st.characters(codec="utf-8"), max_size=30)
name_words = st.text(st.characters(categories=["L", "N"]) | st.sampled_from(" .'-"), min_size=1, max_size=30)


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


candidates = st.one_of(
    st.text(max_size=60),
    addr_specs,
    st.builds(lambda name, addr: f"{name} <{addr}>", names, addr_specs),
    st.builds(lambda name, addr: f"{quoted(name)} <{addr}>", names, addr_specs),
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}", addr_specs, st.sampled_from([",", ";", " ", ", "]), addr_specs
    ),
)


@settings(deadline=None, max_examples=300)
@given(candidates)
@example("rêader@example.org")
@example("a,b@x")
@example('"Dupont, Marie" <marie@example.org>')
def test_any_accepted_text_renders_and_reparses_to_the_same_addr_spec(text: str) -> None:
    try:
        address = parse_address(text)
    except ValueError:
        return
    assert address.addr_spec.isascii()
    assert_renders_and_sends(address)


@settings(deadline=None)
@given(name_words, addr_specs)
def test_quoted_name_of_letters_digits_and_punctuation_is_accepted_as_written(name: str, addr: str) -> None:
    address = parse_address(f"{quoted(name)} <{addr}>")
    assert " ".join(name.split()) == address.display_name
    assert_renders_and_sends(address)
