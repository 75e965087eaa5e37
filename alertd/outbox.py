"""What one delivery attempt decides (pure), and the outbox's retry policy (RELIABILITY D3).

    message, outcome (a DeliveryReport or a DeliveryError), now  --decide_attempt-->  AttemptDecision

- accepted: sent (recipients refused on the way are noted);
- transient (4xx, timeout, connection lost): retried after 1 min, 2 min, 4 min... at most 1 h apart, for 24 h
  from when the message was queued, then failed for good;
- permanent (5xx, unusable mailbox): failed, no retry;
- a setup error (535, no STARTTLS, no password): no message can go until it is fixed, so SMTP delivery pauses
  and every message stays queued; the pause holds until the delivery settings change or someone lifts it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alertd import schedule
from alertd.config import DeliveryConfig
from alertd.errors import DeliveryError, PermanentDeliveryError, SmtpSetupError, TransientDeliveryError
from alertd.models import DeliveryReport
from alertd.records import AttemptRecord, DeliveryPause, OutboxMessage

RETRY_FIRST = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
RETRY_LIFETIME = timedelta(hours=24)

MessageCondition = Literal["pending", "retrying", "sending", "failed", "sent"]
"""How a message stands, as ``alertd status`` and ``alertd outbox`` show it."""


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    """What an attempt amounted to: what to store, and what to say."""

    record: AttemptRecord
    log: tuple[int, str]
    """The line for the log: (logging level, message)."""
    stop: bool = False
    """No further message can go in this drain (delivery paused)."""


STOP_MARGIN = timedelta(seconds=15)
"""Beyond the SMTP deadline: the goodbye (QUIT, 5 s), the TLS close (2 s), a busy machine."""
LEASE_MARGIN = timedelta(seconds=60)
"""A claim outlives the longest attempt by this much (the goodbye, the socket closed, a busy machine)."""


def lease(delivery: DeliveryConfig) -> timedelta:
    """How long a claim on a message holds: the longest one attempt can take, and a margin. A claim left by a
    process that died expires then, and another process attempts the message, with the same Message-ID."""
    longest = delivery.smtp.timeout if delivery.method == "smtp" else timedelta(0)
    return longest + LEASE_MARGIN


def stop_wait(delivery: DeliveryConfig) -> timedelta:
    """How long a stopping daemon waits for a delivery in flight: the server's reply to the final dot may take
    the whole SMTP deadline, then the goodbye. The service's stop timeout must be longer (systemd's
    ``TimeoutStopSec``: see systemd/alertd.service), or a stop turns a delivery in flight into a duplicate."""
    longest = delivery.smtp.timeout if delivery.method == "smtp" else timedelta(0)
    return longest + STOP_MARGIN


def claim_window(now: datetime, delivery: DeliveryConfig) -> tuple[datetime, datetime]:
    """(due by, trusted until): a message is due when its next attempt is at or before ``now``; a retry
    time, or a claim, further ahead than the policy ever puts one (``RETRY_CAP``, :func:`lease`) comes from a
    clock that was ahead and was corrected, and counts as due, or expired."""
    return now, now + max(RETRY_CAP, lease(delivery)) * 1.1


def claimant_pid(claimant: str | None) -> int | None:
    """The process id in a claimant's name (``pid 1234 (daemon)``), None when it has none."""
    if not claimant or not claimant.startswith("pid "):
        return None
    number = claimant[4:].split(" ", 1)[0]
    return int(number) if number.isdigit() else None


def retry_delay(attempt: int) -> timedelta:
    """How long a message waits after its ``attempt``-th deferral: 1 min, 2 min, 4 min, ... capped at 1 h."""
    return schedule.backoff(attempt, RETRY_FIRST, RETRY_CAP)


def decide_attempt(
    message: OutboxMessage, outcome: DeliveryReport | DeliveryError, fingerprint: str, now: datetime
) -> AttemptDecision:
    """The fate of one attempt to deliver ``message`` (see the module docstring).

    ``fingerprint`` is :func:`settings_fingerprint` of the delivery settings in force: a pause taken under
    them ends when they change.
    """
    attempts = message.attempts + 1
    who = message.subscriber
    if isinstance(outcome, DeliveryReport):
        note = refused_note(outcome)
        record = AttemptRecord(message.id, "sent", attempts, note=note)
        if note:
            return AttemptDecision(
                record,
                (
                    logging.WARNING,
                    f"{_kind(message)} {message.message_id} delivered to some recipients only: {note}",
                ),
            )
        return AttemptDecision(
            record, (logging.INFO, f"{_kind(message)} {message.message_id} delivered to {who}")
        )
    error = str(outcome)
    if isinstance(outcome, SmtpSetupError):
        record = AttemptRecord(
            message.id, "paused", attempts, note=error, pause_reason=error, pause_fingerprint=fingerprint
        )
        line = (
            f"SMTP delivery paused: configuration error: {error}. Queued messages stay queued; fix "
            "[delivery.smtp] or the password, then reload the config (systemctl reload alertd) or run "
            "`alertd outbox retry`"
        )
        return AttemptDecision(record, (logging.ERROR, line), stop=True)
    if isinstance(outcome, TransientDeliveryError):
        if now - message.created_at >= RETRY_LIFETIME:
            note = f"gave up after {RETRY_LIFETIME}: {error}"
            record = AttemptRecord(message.id, "failed", attempts, note=note)
            return AttemptDecision(record, (logging.ERROR, f"delivery to {who} failed for good: {error}"))
        delay = retry_delay(attempts)
        record = AttemptRecord(message.id, "retry", attempts, note=error, next_attempt_at=now + delay)
        return AttemptDecision(
            record, (logging.WARNING, f"delivery to {who} deferred: {error} (retry in {delay})")
        )
    assert isinstance(outcome, PermanentDeliveryError | DeliveryError)
    record = AttemptRecord(message.id, "failed", attempts, note=error)
    return AttemptDecision(record, (logging.ERROR, f"delivery to {who} failed: {error}"))


def refused_note(report: DeliveryReport) -> str | None:
    """The recipients a server refused while accepting others, as one line for the outbox and the log."""
    if not report.refused:
        return None
    refused = "; ".join(
        f"{addr}: {code} {text}".strip() for addr, (code, text) in sorted(report.refused.items())
    )
    return f"refused by the server: {refused}"


def settings_fingerprint(delivery: DeliveryConfig) -> str:
    """A digest of the delivery settings: a pause taken under some settings ends when they change."""
    return hashlib.sha256(repr(delivery).encode("utf-8")).hexdigest()[:16]


def pause_in_force(pause: DeliveryPause | None, delivery: DeliveryConfig) -> bool:
    """Whether a stored pause still holds: it concerns SMTP, and was taken under the settings now in force."""
    return (
        pause is not None
        and delivery.method == "smtp"
        and pause.config_fingerprint == settings_fingerprint(delivery)
    )


def condition(message: OutboxMessage) -> MessageCondition:
    """pending (never tried), retrying (tried and deferred), sending (claimed now), failed, or sent."""
    if message.status == "pending":
        return "retrying" if message.attempts else "pending"
    return message.status


def _kind(message: OutboxMessage) -> str:
    return "alert" if message.kind == "alert" else "digest"
