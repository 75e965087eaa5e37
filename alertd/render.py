"""``Digest`` -> ``EmailMessage`` (pure): jinja2 text and HTML parts, safe headers, deterministic Message-ID.

Feed data is hostile. It reaches the templates as plain text only (``Story.summary_text``), autoescaped in
HTML; every header built from it goes through :func:`safe_header`; a story that cannot be rendered is logged
and dropped so the rest of the digest still goes (RELIABILITY D5, E1-E4).
"""

from __future__ import annotations

import hashlib
import logging
import re
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from datetime import timezone as dt_timezone
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import jinja2

import alertd
from alertd.config import default
from alertd.errors import ConfigError
from alertd.excerpt import ELLIPSIS, excerpt, term_places
from alertd.mailaddr import parse_address
from alertd.models import Digest, FeedHealth, MessageLanguage, Span, Story, TopicRule, TopicSection
from alertd.normalise import drop_invisible
from alertd.strings import ERROR_CLASSES, STRINGS

__all__ = [
    "DATETIME_FORMAT",
    "LANGUAGES",
    "STRINGS",
    "SUMMARY_LIMIT",
    "TEMPLATE_NAMES",
    "check_templates",
    "highlight_segments",
    "http_link",
    "list_id_for",
    "list_unsubscribe_for",
    "load_templates",
    "local_time",
    "message_id_for",
    "packaged_templates_dir",
    "render_digest",
    "safe_header",
    "wrap_text",
]

log = logging.getLogger(__name__)

#: Every date the reader sees is formatted with this (French) or as "26 Nov 2026, 07:03" (English), in the
#: subscriber's time zone. Month names come from :data:`STRINGS`, never from the process locale.
DATETIME_FORMAT = "%d/%m/%Y %H:%M"
LANGUAGES: tuple[MessageLanguage, ...] = ("fr", "en")
DEFAULT_LANGUAGE: str = default("subscriber", "language")
"""For templates that do not say (the option table's default)."""
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Summaries longer than this (in characters) are cut at a word boundary.
SUMMARY_LIMIT = 400
SUBJECT_LIMIT = 200
#: The plain-text part is wrapped to this many columns.
TEXT_WIDTH = 78
TEMPLATE_NAMES = ("subject.txt.j2", "digest.txt.j2", "digest.html.j2")

# Header-unsafe characters: C0 and C1 controls, DEL, line/paragraph separators, lone surrogates.
_UNSAFE_HEADER_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# --- text helpers used by the templates ---------------------------------------------------------


def safe_header(value: str, limit: int = SUBJECT_LIMIT) -> str:
    """A header value safe to emit whatever the input: no controls or line breaks, no encoded-words.

    Invisible characters (soft hyphens, zero-width spaces, bidi marks) are dropped; controls (C0, C1, DEL),
    CR, LF, U+2028/2029 and lone surrogates become spaces, ``=?`` is broken with a
    zero-width space so no mail client decodes feed text as an RFC 2047 encoded-word, whitespace is
    collapsed and the result is cut to ``limit`` characters with an ellipsis.
    """
    cleaned = "".join(" " if _is_unsafe_in_header(ch) else ch for ch in drop_invisible(value))
    cleaned = " ".join(cleaned.split())
    cleaned = cleaned.replace("=?", "=\u200b?")
    if len(cleaned) > limit:
        cleaned = cleaned[: max(limit - 1, 0)].rstrip() + "…"
    return cleaned


def _is_unsafe_in_header(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_HEADER_CATEGORIES


def highlight_segments(
    text: str, spans: Iterable[Span], field: str, *, limit: int | None = None
) -> list[tuple[str, bool]]:
    """Split ``text`` into ``(segment, highlighted)`` pairs from the spans of ``field``.

    Spans are offsets into the original text; out-of-range spans are clipped and overlapping ones merged.
    With ``limit``, text longer than ``limit`` is shown as :func:`alertd.excerpt.excerpt` chooses: the window
    with the most spans, cut at word boundaries, an ellipsis segment at each cut, ``limit`` characters in all.
    Whitespace runs and control characters in segments become single spaces, and invisible characters
    (:data:`alertd.normalise.INVISIBLE`: soft hyphens, zero-width spaces, bidi marks...) are dropped after the
    text is cut at the spans, so a highlight still wraps exactly its letters (``Ali\\u00adbaba`` shows as a
    highlighted ``Alibaba``).
    """
    shown = excerpt(text, tuple(spans), limit, field)
    text = shown.text
    ranges = _merge_ranges((max(s.start, 0), min(s.end, len(text))) for s in shown.spans)
    segments: list[tuple[str, bool]] = [(ELLIPSIS, False)] if shown.start > 0 else []
    cursor = 0
    for start, end in ranges:
        segments.append((text[cursor:start], False))
        segments.append((text[start:end], True))
        cursor = end
    segments.append((text[cursor:], False))
    if shown.cut_end:
        segments.append((ELLIPSIS, False))
    return _clean_segments(segments)


def _merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _clean_segments(segments: Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
    cleaned = [(_clean_text(seg), hit) for seg, hit in segments]
    if cleaned:
        cleaned[0] = (cleaned[0][0].lstrip(), cleaned[0][1])
        cleaned[-1] = (cleaned[-1][0].rstrip(), cleaned[-1][1])
    return [(seg, hit) for seg, hit in cleaned if seg]


def _clean_text(text: str) -> str:
    """Invisible characters dropped, controls and whitespace runs made one space; keeps a leading/trailing
    space to join segments."""
    text = "".join(" " if _is_unsafe_in_header(ch) else ch for ch in drop_invisible(text))
    return re.sub(r"\s+", " ", text)


def wrap_text(text: str, first: str = "", rest: str | None = None, width: int = TEXT_WIDTH) -> str:
    """``text`` wrapped for the plain-text part: ``first`` starts the first line, ``rest`` the others.

    Long words (URLs) are never broken; ``rest`` defaults to spaces as wide as ``first``.
    """
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=first,
        subsequent_indent=" " * len(first) if rest is None else rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def http_link(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (so templates show plain text, not a link)."""
    if not url:
        return None
    url = url.strip()
    if any(_is_unsafe_in_header(ch) or ch.isspace() for ch in url):
        return None
    parts = urlsplit(url)
    return url if parts.scheme.lower() in {"http", "https"} and parts.netloc else None


def local_time(moment: datetime | None, tz_name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """``moment`` in the time zone ``tz_name``, in the reader's ``language``; naive means UTC.

    French: ``26/11/2026 07:03`` (:data:`DATETIME_FORMAT`); English: ``26 Nov 2026, 07:03``.
    """
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_timezone.utc)
    local = moment.astimezone(ZoneInfo(tz_name))
    if language == "en":
        return f"{local.day} {_MONTHS_EN[local.month - 1]} {local.year}, {local:%H:%M}"
    return local.strftime(DATETIME_FORMAT)


def health_text(feed: FeedHealth, language: str) -> str:
    """What is wrong with a feed, in the reader's language (``feed.problem`` when the kind is unknown)."""
    strings = STRINGS.get(language, STRINGS["fr"])
    if feed.kind == "failing" and feed.error_class is not None:
        error = ERROR_CLASSES.get(language, {}).get(feed.error_class, feed.error_class)
        # French counts 0 and 1 in the singular, English only 1.
        one = feed.attempts <= 1 if language == "fr" else feed.attempts == 1
        attempts = strings["attempt_one" if one else "attempt_many"].format(n=feed.attempts)
        return strings["health_failing"].format(error=error, attempts=attempts)
    if feed.kind == "moved" and feed.target is not None:
        return strings["health_moved"].format(target=feed.target)
    if feed.kind in ("gone", "flood"):
        return strings[f"health_{feed.kind}"]
    return feed.problem


def why_terms(story: Story, language: str, limit: int | None = SUMMARY_LIMIT) -> list[tuple[str, str]]:
    """The terms of a story's why line, each with where it matched when the reader cannot see it highlighted
    in the title or the excerpt shown ("dans le lien", "plus loin dans le texte"), else ``""``."""
    strings = STRINGS.get(language, STRINGS["fr"])
    notes = {"shown": "", "link": strings["in_link"], "further": strings["further"]}
    places = term_places(story.terms, story.spans, story.summary_text, limit)
    return [(place.term, notes[place.where]) for place in places]


def rule_note(story: Story, rule: TopicRule, language: str) -> str:
    """What made the story match when it was a rule rather than one term: the topic's query, its ``all``
    groups, its score against ``min_score`` (``""`` for a plain list of terms)."""
    strings = STRINGS.get(language, STRINGS["fr"])
    notes = []
    if rule.kind == "query":
        notes.append(strings["rule_query"])
    elif rule.kind == "all":
        notes.append(strings["rule_all"])
    if rule.min_score is not None:
        notes.append(strings["rule_score"].format(score=f"{story.score:g}", min=f"{rule.min_score:g}"))
    return ", ".join(notes)


def versions_text(story: Story, language: str) -> str:
    """The "2 autres versions" of a story its shown copy's feed carried more than once; ``""`` otherwise."""
    strings = STRINGS.get(language, STRINGS["fr"])
    if story.other_versions <= 0:
        return ""
    if story.other_versions == 1:
        return strings["other_version"]
    return strings["other_versions"].format(n=story.other_versions)


# --- templates -----------------------------------------------------------------------------------


def packaged_templates_dir() -> Path:
    """The default templates: inside the installed package, else the repository's ``templates/``."""
    package_dir = Path(alertd.__file__).resolve().parent
    for candidate in (package_dir / "templates", package_dir.parent / "templates"):
        if (candidate / "digest.html.j2").is_file():
            return candidate
    raise RuntimeError(f"alertd's default templates are missing (looked next to {package_dir})")


def load_templates(templates_dir: Path | None) -> jinja2.Environment:
    """A jinja2 environment where ``templates_dir`` (if any) overrides the packaged templates, file by file.

    ``.html.j2`` templates are autoescaped, ``.txt.j2`` ones are not; undefined names are errors.
    """
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        if not templates_dir.is_dir():
            raise ConfigError.single(templates_dir, "templates_dir is not a directory", key="templates_dir")
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(packaged_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "xml", "html.j2"), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        highlight_segments=highlight_segments,
        rule_note=rule_note,
        versions_text=versions_text,
        why_terms=why_terms,
        http_link=http_link,
        local_time=local_time,
        summary_limit=SUMMARY_LIMIT,
        wrap_text=wrap_text,
        datetime_format=DATETIME_FORMAT,
    )
    env.filters["local_time"] = local_time
    env.filters["health"] = health_text
    env.filters["http_link"] = http_link
    return env


def check_templates(env: jinja2.Environment) -> list[str]:
    """Compile and render each template against sample digests and alerts in every language; one message
    per broken template."""
    from alertd.sample import sample_digest  # the sample builds digests the way digest.py does

    samples = [sample_digest(language, kind) for language in LANGUAGES for kind in ("digest", "alert")]
    problems: list[str] = []
    for name in TEMPLATE_NAMES:
        try:
            template = env.get_template(name)
            for digest in samples:
                template.render(_context(digest))
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{exc.filename or name}:{exc.lineno}: {exc.message}")
        except Exception as exc:  # a user template can fail in any way; report it, never crash
            problems.append(f"{_template_file(env, name)}: {type(exc).__name__}: {exc}")
    return problems


def _template_file(env: jinja2.Environment, name: str) -> str:
    try:
        return env.get_template(name).filename or name
    except Exception:
        return name


# --- the message ---------------------------------------------------------------------------------


def render_digest(
    digest: Digest, env: jinja2.Environment, *, list_id_domain: str = "alertd.local"
) -> EmailMessage:
    """The digest as a ``multipart/alternative`` email (text/plain, then text/html), ready to deliver.

    Stories that fail to render are logged and left out; the rest of the digest still goes.
    """
    digest, parts = _render_dropping_poison(digest, env)
    subject, text, html = parts
    message = EmailMessage(policy=email_policy.SMTP)
    for name, value in _headers(digest, subject, list_id_domain):
        message[name] = value
    # quoted-printable keeps both parts readable in raw form and safe for 998-octet line limits.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def _headers(digest: Digest, subject: str, list_id_domain: str) -> list[tuple[str, Any]]:
    sender = parse_address(digest.sender)
    return [
        ("Subject", subject),
        ("From", Address(display_name=safe_header(sender.display_name), addr_spec=sender.addr_spec)),
        ("To", Address(display_name=safe_header(digest.subscriber_name), addr_spec=digest.subscriber_email)),
        ("Date", format_datetime(_utc(digest.generated_at), usegmt=True)),
        ("Message-ID", message_id_for(digest.digest_id)),
        ("List-Id", list_id_for(digest.subscriber_email, list_id_domain)),
        ("List-Unsubscribe", list_unsubscribe_for(digest)),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
    ]


def message_id_for(digest_id: str) -> str:
    """The Message-ID of a digest: a function of its id only, so a retried send keeps it."""
    token = _MESSAGE_ID_UNSAFE.sub("", digest_id)[:64] or "digest"
    return f"<{token}@alertd>"


def list_id_for(subscriber_email: str, list_id_domain: str) -> str:
    """One List-Id per subscription, so mail clients can filter it without exposing the address."""
    token = hashlib.sha256(subscriber_email.strip().casefold().encode("utf-8")).hexdigest()[:16]
    domain = _MESSAGE_ID_UNSAFE.sub("", list_id_domain) or "alertd.local"
    return f"alertd digest <{token}.{domain}>"


def list_unsubscribe_for(digest: Digest) -> str:
    """``List-Unsubscribe`` (RFC 2369): a ``mailto:`` to the contact (``[digest] admin_contact``, else the
    sender) whose subject names the subscriber and the topics of this mail, so that a mail client's unsubscribe
    button, and a filter on the admin's side, say who wants out of what."""
    to = parse_address(digest.contact or digest.sender).addr_spec
    topics = ",".join(section.topic_id for section in digest.sections)
    subject = f"unsubscribe {digest.subscriber_email} {topics}".strip()
    return f"<mailto:{quote(to, safe='@')}?subject={quote(subject, safe='')}>"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt_timezone.utc)
    return moment.astimezone(dt_timezone.utc)


def _render_dropping_poison(digest: Digest, env: jinja2.Environment) -> tuple[Digest, tuple[str, str, str]]:
    """Render the digest; if that fails, drop each story or feed-health row that fails alone and retry."""
    try:
        return digest, _render_parts(digest, env)
    except Exception:
        log.warning("digest %s failed to render; looking for poison stories", digest.digest_id, exc_info=True)
    cleaned = _without_poison(digest, env)
    return cleaned, _render_parts(cleaned, env)


def _render_parts(digest: Digest, env: jinja2.Environment) -> tuple[str, str, str]:
    context = _context(digest)
    subject = safe_header(env.get_template("subject.txt.j2").render(context), SUBJECT_LIMIT)
    text = env.get_template("digest.txt.j2").render(context)
    html = env.get_template("digest.html.j2").render(context)
    for part in (subject, text, html):
        part.encode("utf-8")  # lone surrogates from a feed fail here, not in the middle of SMTP
    return subject, text, html


def _context(digest: Digest) -> dict[str, Any]:
    """What templates see: the digest, and ``t``, the fixed strings in the reader's language."""
    return {"digest": digest, "t": STRINGS.get(digest.language, STRINGS["fr"]), "lang": digest.language}


def _without_poison(digest: Digest, env: jinja2.Environment) -> Digest:
    sections = tuple(_section_without_poison(digest, section, env) for section in digest.sections)
    health = tuple(
        h for h in digest.feed_health if _renders(replace(digest, sections=(), feed_health=(h,)), env)
    )
    return replace(digest, sections=tuple(s for s in sections if s.stories), feed_health=health)


def _section_without_poison(digest: Digest, section: TopicSection, env: jinja2.Environment) -> TopicSection:
    def renders(story: Story, *, overflow: bool) -> bool:
        alone = replace(section, stories=() if overflow else (story,), overflow=(story,) if overflow else ())
        ok = _renders(replace(digest, sections=(alone,), feed_health=()), env)
        if not ok:
            log.error("skipping story %s in digest %s: it fails to render", story.item_key, digest.digest_id)
        return ok

    stories = tuple(s for s in section.stories if renders(s, overflow=False))
    overflow = tuple(s for s in section.overflow if renders(s, overflow=True))
    if not stories and overflow:  # keep the section showable: promote the first overflow story
        stories, overflow = overflow[:1], overflow[1:]
    return replace(section, stories=stories, overflow=overflow)


def _renders(digest: Digest, env: jinja2.Environment) -> bool:
    try:
        _render_parts(digest, env)
    except Exception:
        return False
    return True
