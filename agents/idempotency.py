"""`Idempotency-Key` on the POSTs that create runs and workflows: a client that retries a request
(a timeout, a dropped connection) gets the run its first try created, never a second one.

A key belongs to one user and one endpoint and lasts KEY_TTL. Its row is inserted in the same
transaction as what it creates: PostgreSQL makes a second insert of the same (user, key, endpoint)
wait until the first transaction ends, so two retries at once create one run (enqueued once, on
the first one's commit) and the second answers with it. The same key with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import AgentRun, IdempotencyKey, Workflow

KEY_TTL = timedelta(hours=24)
KEY_MAX_LENGTH = 255
# Printable ASCII, no leading or trailing space (HTTP strips those anyway).
_KEY = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
# A row may vanish between the refused insert and the read (it expired, or its run was deleted).
_ATTEMPTS = 3

Created = TypeVar("Created", AgentRun, Workflow)


class IdempotencyConflict(Exception):
    """The key was already used, within KEY_TTL, for a request with another body."""


def key_check(key: str) -> str:
    """The key as given, or a ValidationError that says what a key may be."""
    if len(key) > KEY_MAX_LENGTH or not _KEY.fullmatch(key):
        raise ValidationError(
            f"An Idempotency-Key is 1 to {KEY_MAX_LENGTH} printable ASCII characters "
            f"(got {len(key)} characters{'' if key.isascii() else ', not all ASCII'})."
        )
    return key


def body_sha256(body: Any) -> str:
    """The SHA-256 of the body as canonical JSON: key order and spacing do not make another body."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _created(record: IdempotencyKey) -> AgentRun | Workflow | None:
    return record.run or record.workflow


def submit_once(*, user, key: str, endpoint: str, body: Any, submit: Callable[[], Created]) -> tuple[Created, bool]:
    """What `submit` creates, or what it created for this key before; True when it is the earlier one.

    Raises IdempotencyConflict for the same key with another body, and whatever `submit` raises
    (then nothing is stored and the key stays free)."""
    digest = body_sha256(body)
    for _ in range(_ATTEMPTS):
        now = timezone.now()
        with transaction.atomic():
            IdempotencyKey.objects.filter(user=user, key=key, endpoint=endpoint, created_at__lte=now - KEY_TTL).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyKey.objects.create(
                        user=user, key=key, endpoint=endpoint, body_sha256=digest, created_at=now
                    )
            except IntegrityError:
                record = None  # another request holds the key; its transaction has ended
            if record is not None:
                created = submit()
                if isinstance(created, AgentRun):
                    record.run = created
                else:
                    record.workflow = created
                record.save(update_fields=["run", "workflow"])
                return created, False
        earlier = (
            IdempotencyKey.objects.filter(user=user, key=key, endpoint=endpoint, created_at__gt=now - KEY_TTL)
            .select_related("run", "workflow")
            .first()
        )
        if earlier is None or _created(earlier) is None:
            continue
        if earlier.body_sha256 != digest:
            raise IdempotencyConflict(
                f"This Idempotency-Key was used in the last {KEY_TTL.total_seconds() / 3600:.0f} hours "
                "with a different request body."
            )
        return _created(earlier), True
    raise IdempotencyConflict("This Idempotency-Key is in use by another request; try again.")


def keys_expire(*, now: datetime | None = None) -> int:
    """Delete keys older than KEY_TTL (the sweeper's housekeeping); returns how many."""
    cutoff = (now or timezone.now()) - KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=cutoff).delete()
    return deleted
