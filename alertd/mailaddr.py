"""Mail addresses from the config: one parser for the config check and the renderer (RELIABILITY row 44).

What :func:`parse_address` accepts is exactly what alertd can put in a ``From:``/``To:`` header (policy
``email.policy.SMTP``) and give to aiosmtplib without SMTPUTF8. It accepts one mailbox, ``addr`` or
``Name <addr>``, and refuses with a ``ValueError`` that says what is wrong and shows an accepted form:

- anything but exactly one address: ``a,b@x``, ``a;b@x``, ``a@x, b@y``, group syntax (``team: a@x;``), an
  empty value; commas and other specials are fine inside a quoted name (``"Dupont, Marie" <m@example.org>``);
- control characters anywhere (C0, C1, DEL, CR, LF, U+2028, U+2029, lone surrogates), also once RFC 2047
  encoded-words in the name are decoded; comments in parentheses (the stdlib drops them silently);
- a local part (before ``@``) that is not ASCII, because alertd does not use SMTPUTF8, or that is not a
  dot-atom (quoted local parts such as ``"a b"@example.org`` are refused, few servers take them);
- a domain that is an address literal (``[192.0.2.1]``), has no dot and is not ``localhost``, ends in an
  all-numeric label, or is not a valid IDNA 2008 host name (``a@-b.org``, ``a@exa_mple.org``). A non-ASCII
  domain is IDNA-encoded with UTS 46 mapping (``marie@exämple.org`` → ``marie@xn--exmple-cua.org``); an ASCII
  one is kept as written;
- the RFC 5321 limits: local part ≤ 64 octets, address ≤ 254 octets; and any input over 998 characters.

The display name may be any other Unicode text; its whitespace is collapsed (as a mail reader would show it)
and it may not contain ``=?``, which mail readers would take for an encoded-word.

The structure is parsed by :mod:`email.headerregistry` (the parser ``EmailMessage`` itself uses) and an
address is refused when that parser reports a defect other than obsolete syntax (``J. Dupont <j@x.org>``,
which RFC 5322 §4 says to accept and which is rendered in the current form); the checks above cover what the
parser lets through or mends silently (a trailing comma, a dropped comment).
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from email.errors import ObsoleteHeaderDefect
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.policy import SMTP
from typing import cast

import idna

MAX_LOCAL_PART = 64
"""RFC 5321 §4.5.3.1.1, in octets (the local part is ASCII)."""
MAX_ADDR_SPEC = 254
"""RFC 5321 path limit (256) less the angle brackets."""
MAX_INPUT = 998
"""RFC 5322 line limit: no sensible address is longer, and the stdlib parser is not linear on every input."""

ACCEPTED = "one address such as 'marie@example.org' or 'Marie Dupont <marie@example.org>'"

_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_HEADERS = HeaderRegistry()


@dataclass(frozen=True, slots=True)
class MailAddress:
    """One mailbox alertd sends from or to, as :func:`parse_address` accepted it."""

    display_name: str
    """The name shown with the address, whitespace collapsed, maybe non-ASCII; ``""`` for a bare address."""
    addr_spec: str
    """``local@domain``, ASCII only (domain IDNA-encoded): what goes to SMTP ``MAIL FROM``/``RCPT TO``."""

    def header(self) -> str:
        """The RFC 5322 form for a ``From:``/``To:`` value, in ASCII: a non-ASCII name is RFC 2047-encoded."""
        folded = _HEADERS("To", self.as_address()).fold(policy=SMTP)
        return folded.replace("\r\n", "").removeprefix("To:").strip()

    def text(self) -> str:
        """The form a person writes (``Marie Dupont <marie@example.org>``, quoted where needed, not encoded):
        what the config keeps; :func:`parse_address` reads it back exactly."""
        return str(self.as_address())

    def as_address(self) -> Address:
        """The address as :class:`email.headerregistry.Address`, to assign to an ``EmailMessage`` header."""
        return Address(display_name=self.display_name, addr_spec=self.addr_spec)


def parse_address(text: str) -> MailAddress:
    """The one mailbox in ``text`` (``addr`` or ``Name <addr>``); raises ValueError saying what is wrong."""
    _check_characters(text, text)
    value = text.strip(" ")
    if not value:
        raise _refused(text, "it is empty")
    if len(value) > MAX_INPUT:
        raise _refused(text, f"it is longer than {MAX_INPUT} characters")
    _check_specials(text, _outside_quoted_strings(value))
    address = _one_mailbox(text, value)
    addr_spec = f"{_local_part(text, address.username)}@{_domain(text, address.domain)}"
    if len(addr_spec) > MAX_ADDR_SPEC:
        raise _refused(text, f"the address is longer than {MAX_ADDR_SPEC} characters")
    return MailAddress(display_name=_display_name(text, address.display_name), addr_spec=addr_spec)


def _refused(text: str, problem: str) -> ValueError:
    return ValueError(f"{text!r} is not an email address alertd can send to: {problem}; expected {ACCEPTED}")


def _check_characters(text: str, part: str) -> None:
    for ch in part:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            raise _refused(text, f"it contains a control character or line break (U+{ord(ch):04X})")


def _outside_quoted_strings(value: str) -> str:
    """``value`` without its quoted strings (``"..."``, backslash escapes), to find list and group syntax."""
    outside: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(ch)
    return "".join(outside)


def _check_specials(text: str, outside: str) -> None:
    """Refuse, with a precise reason, the syntax the stdlib parser accepts or mends without a defect."""
    if "[" in outside or "]" in outside:
        raise _refused(
            text,
            "address literals such as [192.0.2.1] are not accepted (use a domain name); "
            "a name with '[' goes in quotes",
        )
    if ":" in outside:
        raise _refused(
            text, "group syntax ('team: a@example.org;') is not accepted; a name with ':' goes in quotes"
        )
    if "," in outside or ";" in outside:
        raise _refused(
            text,
            "it holds more than one address (',' or ';'); a name with a comma goes in quotes: "
            '"Dupont, Marie" <marie@example.org>',
        )
    if "(" in outside or ")" in outside:
        raise _refused(
            text, 'comments in parentheses are not accepted; quote the name: "Marie (Dupont)" <m@example.org>'
        )


def _one_mailbox(text: str, value: str) -> Address:
    if "@" not in value:
        raise _refused(text, "it has no '@domain' part")
    try:
        header = _HEADERS("To", value)
    except ValueError as exc:  # such as an encoded-word decoding to CR or LF
        raise _refused(text, f"it is not a valid address ({exc})") from exc
    except Exception as exc:  # the stdlib parser raises IndexError and others on some malformed input
        raise _refused(text, "it is not a valid address") from exc
    # The registry builds "To" from UniqueAddressHeader and BaseHeader; the stubs cannot say both.
    groups = cast(AddressHeader, header).groups
    if len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        raise _refused(text, "it is not exactly one address")
    address = groups[0].addresses[0]
    if not address.username.isascii():
        raise _refused(
            text,
            f"the part before '@' ({address.username!r}) must be ASCII: alertd does not use SMTPUTF8, "
            "which a non-ASCII local part needs",
        )
    # Obsolete syntax (RFC 5322 §4, such as a '.' in an unquoted name) must be accepted; it is rendered anew.
    defects = [d for d in header.defects if not isinstance(d, ObsoleteHeaderDefect)]
    if defects:
        raise _refused(text, f"it is not a valid address ({str(defects[0]) or type(defects[0]).__name__})")
    if not address.username or not address.domain:
        raise _refused(text, "it needs a local part, '@' and a domain")
    return address


def _local_part(text: str, local: str) -> str:
    if not all(atom and _ATEXT.issuperset(atom) for atom in local.split(".")):
        raise _refused(
            text,
            f"the part before '@' ({local!r}) may hold only letters, digits, dots between them and "
            "!#$%&'*+-/=?^_`{|}~ (quoted local parts are not accepted)",
        )
    if len(local) > MAX_LOCAL_PART:
        raise _refused(text, f"the part before '@' is longer than {MAX_LOCAL_PART} characters")
    return local


def _domain(text: str, domain: str) -> str:
    try:
        encoded = idna.encode(domain, uts46=not domain.isascii()).decode("ascii")
    except idna.IDNAError as exc:
        raise _refused(text, f"the domain {domain!r} is not a valid host name ({exc})") from exc
    if "." not in encoded and encoded.lower() != "localhost":
        raise _refused(text, f"the domain {domain!r} needs a dot, as in example.org (or is 'localhost')")
    if encoded.rsplit(".", 1)[-1].isdigit():
        raise _refused(text, f"the domain {domain!r} is not a host name (its last label is a number)")
    return encoded


def _display_name(text: str, name: str) -> str:
    _check_characters(text, name)
    collapsed = " ".join(name.split())
    if "=?" in collapsed:
        raise _refused(text, "the name contains '=?', which mail readers would decode; leave it out")
    return collapsed
