"""The delivery-attempt decider as a table: a message and what the server said → what is stored and said."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.config import DeliveryConfig, SmtpConfig
from alertd.errors import (
    AuthDeliveryError,
    DeliveryError,
    PermanentDeliveryError,
    SmtpSetupError,
    TransientDeliveryError,
)
from alertd.models import DeliveryReport
from alertd.outbox import (
    RETRY_LIFETIME,
    condition,
    decide_attempt,
    pause_in_force,
    retry_delay,
    settings_fingerprint,
)
from alertd.records import DeliveryPause, OutboxMessage

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
RCPT = ("marie@example.org",)


def message(
    *, attempts: int = 0, age: timedelta = timedelta(minutes=5), status: str = "pending"
) -> OutboxMessage:
    return OutboxMessage(
        id=7,
        message_id="<m@alertd>",
        subscriber="marie@example.org",
        status=status,  # type: ignore[arg-type]
        attempts=attempts,
        created_at=NOW - age,
        next_attempt_at=NOW,
        last_error=None,
        message=b"",
    )


ACCEPTED = DeliveryReport("smtp", "<m@alertd>", RCPT)
PARTLY = DeliveryReport("smtp", "<m@alertd>", RCPT, refused={"gone@example.org": (550, "5.1.1 no such user")})

ROWS = [
    # (case, message, outcome) → (status, attempts, note contains, next attempt in, log level, stops the drain)
    ("accepted", message(), ACCEPTED, ("sent", 1, None, None, logging.INFO, False)),
    (
        "accepted for some recipients only",
        message(attempts=2),
        PARTLY,
        ("sent", 3, "gone@example.org: 550 5.1.1 no such user", None, logging.WARNING, False),
    ),
    (
        "451 on the first attempt: retry in a minute",
        message(),
        TransientDeliveryError(RCPT, "451 try later"),
        ("retry", 1, "451 try later", timedelta(minutes=1), logging.WARNING, False),
    ),
    (
        "451 on the fourth attempt: retry in 8 minutes",
        message(attempts=3),
        TransientDeliveryError(RCPT, "451 try later"),
        ("retry", 4, "451", timedelta(minutes=8), logging.WARNING, False),
    ),
    (
        "451 on the 30th attempt: at most an hour apart",
        message(attempts=29, age=timedelta(hours=20)),
        TransientDeliveryError(RCPT, "timeout"),
        ("retry", 30, "timeout", timedelta(hours=1), logging.WARNING, False),
    ),
    (
        "still 4xx a day after it was queued: failed for good",
        message(attempts=30, age=RETRY_LIFETIME),
        TransientDeliveryError(RCPT, "451 try later"),
        ("failed", 31, "gave up after 1 day", None, logging.ERROR, False),
    ),
    (
        "550: failed, never retried",
        message(),
        PermanentDeliveryError(RCPT, "550 rejected"),
        ("failed", 1, "550 rejected", None, logging.ERROR, False),
    ),
    (
        "535: delivery pauses for every message",
        message(),
        AuthDeliveryError(RCPT, "535 bad credentials"),
        ("paused", 1, "535 bad credentials", None, logging.ERROR, True),
    ),
    (
        "no STARTTLS offered: delivery pauses",
        message(),
        SmtpSetupError(RCPT, "the server does not offer STARTTLS"),
        ("paused", 1, "STARTTLS", None, logging.ERROR, True),
    ),
    (
        "a DeliveryError of no known kind is not retried",
        message(),
        DeliveryError(RCPT, "odd"),
        ("failed", 1, "odd", None, logging.ERROR, False),
    ),
]


@pytest.mark.parametrize(("queued", "outcome", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_each_outcome_of_an_attempt(
    queued: OutboxMessage,
    outcome: DeliveryReport | DeliveryError,
    expected: tuple[str, int, str | None, timedelta | None, int, bool],
) -> None:
    status, attempts, note, retry_in, level, stop = expected
    decision = decide_attempt(queued, outcome, "fp", NOW)
    record = decision.record
    assert (status, attempts, stop, level) == (record.status, record.attempts, decision.stop, decision.log[0])
    if note is None:
        assert None is record.note
    else:
        assert record.note is not None and note in record.note
    if retry_in is None:
        assert None is record.next_attempt_at
    else:
        assert NOW + retry_in == record.next_attempt_at


def test_a_pause_carries_its_reason_and_the_settings_it_was_taken_under() -> None:
    record = decide_attempt(message(), AuthDeliveryError(RCPT, "535"), "fingerprint-1", NOW).record
    assert ("paused", "fingerprint-1") == (record.status, record.pause_fingerprint)
    assert record.pause_reason is not None and "535" in record.pause_reason


def test_an_alert_is_logged_as_an_alert() -> None:
    alert = OutboxMessage(
        7, "<a@alertd>", "marie@example.org", "pending", 0, NOW, NOW, None, b"", kind="alert"
    )
    assert decide_attempt(alert, ACCEPTED, "fp", NOW).log[1].startswith("alert <a@alertd> delivered")


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (100, 60)],
)
def test_retry_delay_doubles_up_to_an_hour(attempt: int, delay: int) -> None:
    assert timedelta(minutes=delay) == retry_delay(attempt)


SMTP = DeliveryConfig(method="smtp", smtp=SmtpConfig(host="mail.example.org"))


@pytest.mark.parametrize(
    ("pause", "delivery", "in_force"),
    [
        (None, SMTP, False),
        (DeliveryPause(NOW, "535", settings_fingerprint(SMTP)), SMTP, True),
        (
            DeliveryPause(NOW, "535", settings_fingerprint(SMTP)),
            DeliveryConfig(method="smtp", smtp=SmtpConfig(host="other.example.org")),
            False,
        ),
        (
            DeliveryPause(NOW, "535", settings_fingerprint(SMTP)),
            DeliveryConfig(method="maildir", maildir=Path("m")),
            False,
        ),
    ],
    ids=["no pause", "same settings", "settings changed", "no longer SMTP"],
)
def test_a_pause_holds_only_under_the_settings_it_was_taken_under(
    pause: DeliveryPause | None, delivery: DeliveryConfig, in_force: bool
) -> None:
    assert in_force == pause_in_force(pause, delivery)


@pytest.mark.parametrize(
    ("status", "attempts", "expected"),
    [("pending", 0, "pending"), ("pending", 2, "retrying"), ("failed", 3, "failed"), ("sent", 1, "sent")],
)
def test_the_condition_of_a_message(status: str, attempts: int, expected: str) -> None:
    assert expected == condition(message(attempts=attempts, status=status))
