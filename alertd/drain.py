"""The outbox drain: claim a due message, deliver it, let :mod:`alertd.outbox` decide, record the decision.

A message is claimed before any attempt (one transaction: ``sending``, by whom, until when), so the daemon,
``alertd flush`` and ``run --once`` never attempt the same message at once; a claim left by a killed process
expires after its lease and the message is attempted again, with the same Message-ID. An attempt is recorded
only after the server (or the mailbox) answered. When that record cannot be written (the disk is full), the
attempt is kept in memory and nothing more is sent until it is written: no message is repeated because its
sending could not be recorded.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from alertd import outbox
from alertd.deliver import deliver
from alertd.errors import DeliveryError, StateWriteError
from alertd.failpoint import failpoint
from alertd.models import DeliveryReport
from alertd.records import AttemptStatus, OutboxMessage
from alertd.runtime import Runtime

log = logging.getLogger("alertd.pipeline")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """The outcome of one outbox message's delivery attempt."""

    outbox_id: int
    subscriber: str
    status: AttemptStatus
    error: str | None = None
    """Why it was not sent; for a sent message, the recipients the server refused (if any)."""


async def drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    """Deliver every due outbox message; mark each sent only after the server (or mailbox) accepted it."""
    async with rt.delivery_lock:
        attempts = await _drain_outbox(rt, now)
    for attempt in attempts:
        rt.metrics.emails.labels(attempt.status).inc()
    return attempts


def resume_delivery(rt: Runtime, why: str) -> None:
    """Lift a delivery pause (the config was reloaded, or the daemon started): the next drain tries again."""
    if rt.store.resume_delivery():
        log.info("SMTP delivery resumed (%s)", why)


async def _drain_outbox(rt: Runtime, now: datetime) -> list[DeliveryAttempt]:
    if not record_unrecorded(rt, now):
        return []  # the state cannot be written: sending more would only repeat what cannot be recorded
    pause = rt.store.delivery_pause()
    if pause is not None and not outbox.pause_in_force(pause, rt.config.delivery):
        resume_delivery(rt, "the delivery settings changed since it paused")
        pause = None
    if pause is not None:
        waiting = rt.store.due_outbox(now)
        log.debug("SMTP delivery paused since %s: %d messages wait", pause.since, len(waiting))
        return [DeliveryAttempt(q.id, q.subscriber, "paused", pause.reason) for q in waiting]
    _release_dead_claims(rt)
    fingerprint = outbox.settings_fingerprint(rt.config.delivery)
    lease, started = outbox.lease(rt.config.delivery), time.monotonic()
    attempts: list[DeliveryAttempt] = []
    while not rt.stopping:
        until = now + lease + timedelta(seconds=time.monotonic() - started)
        due_by, trusted_until = outbox.claim_window(now, rt.config.delivery)
        try:
            queued = rt.store.claim_next(due_by, rt.claimant, until, trusted_until)
        except StateWriteError as exc:
            _state_unwritable(rt, exc)
            break
        if queued is None:
            break
        outcome = await _attempt(rt, queued)
        decision = outbox.decide_attempt(queued, outcome, fingerprint, now)
        record = dataclasses.replace(decision.record, claimant=rt.claimant)
        if record.status == "sent":
            failpoint("after_delivery_before_mark_sent")
        try:
            rt.store.record_attempt(record, now)
        except StateWriteError as exc:
            rt.unrecorded.append((record, now))  # written as soon as the state can be written again
            _state_unwritable(rt, exc)
        if record.status == "sent":
            failpoint("after_mark_sent")
        log.log(*decision.log)
        attempts.append(DeliveryAttempt(queued.id, queued.subscriber, record.status, record.note))
        if rt.unrecorded:
            break
        if decision.stop:
            rest = [q for q in rt.store.due_outbox(now) if q.id != queued.id]
            attempts.extend(DeliveryAttempt(q.id, q.subscriber, "paused", record.note) for q in rest)
            break
    return attempts


async def _attempt(rt: Runtime, queued: OutboxMessage) -> DeliveryReport | DeliveryError:
    """One delivery attempt of a claimed message; every failure is a DeliveryError."""
    message = email.message_from_bytes(queued.message, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    failpoint("before_delivery")
    rt.delivering += 1
    try:
        with rt.metrics.delivery_seconds.time():
            return await deliver(
                message, rt.config.delivery, base_dir=rt.config.path.parent, password=rt.smtp_password
            )
    except DeliveryError as exc:
        return exc
    finally:
        rt.delivering -= 1


def _release_dead_claims(rt: Runtime) -> None:
    """Claims made by a process that no longer exists (killed while attempting) are given back now, rather
    than when their lease runs out: the message is attempted again, with its Message-ID."""
    for message in rt.store.outbox(("sending",)):
        pid = outbox.claimant_pid(message.claimed_by)
        if pid is None or pid == os.getpid() or _alive(pid) or message.claimed_by is None:
            continue
        if rt.store.release_claim(message.id, message.claimed_by):
            log.info(
                "message %s: its claim by %s was given back (that process is gone)",
                message.id,
                message.claimed_by,
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def record_unrecorded(rt: Runtime, now: datetime) -> bool:
    """Write the attempts that could not be recorded when they happened; False while that still fails."""
    while rt.unrecorded:
        record, at = rt.unrecorded[0]
        try:
            rt.store.record_attempt(record, at)
        except StateWriteError as exc:
            _state_unwritable(rt, exc)
            return False
        rt.unrecorded.pop(0)
    state_writable(rt)
    return True


def _state_unwritable(rt: Runtime, exc: StateWriteError) -> None:
    if rt.state_problem is None:
        log.error("%s: delivery stops until it can be written again (nothing will be sent twice)", exc)
    rt.state_problem = str(exc)
    rt.metrics.state_writable.set(0)


def state_writable(rt: Runtime) -> None:
    """A write went through: if the state could not be written before, it can again."""
    if rt.state_problem is not None and not rt.unrecorded:
        log.info("the state can be written again: delivery resumes")
        rt.state_problem = None
        rt.metrics.state_writable.set(1)
