"""Leases: a named lock held for a while and renewed by its holder, so that a holder
that dies (a killed worker) cannot keep it forever.

Scheduled runs take the lease of their pipeline (``schedule:<name>``) so that a second
one is skipped while the first still runs (see :mod:`datapipe.schedules`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone

__all__ = ["PipelineLease"]


class PipelineLease(models.Model):
    """A named lease: ``holder`` has it until ``expires_at`` unless it renews it."""

    name = models.CharField(max_length=255, unique=True)
    holder = models.CharField(max_length=255)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    skipped = models.PositiveIntegerField(
        default=0, help_text="Times the lease was asked for while held (runs skipped).")

    class Meta:
        default_permissions = ("view",)

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def acquire(cls, name: str, holder: str, seconds: float, using: str = "default") -> bool:
        """Take the lease ``name`` for ``seconds`` if nobody holds it or its holder let it
        expire; True when ``holder`` has it now. One conditional write: two callers at
        the same time cannot both win."""
        now = timezone.now()
        until = now + timedelta(seconds=seconds)
        free = Q(expires_at__lt=now) | Q(holder=holder)
        if cls.objects.using(using).filter(free, name=name).update(
                holder=holder, acquired_at=now, expires_at=until):
            return True
        try:
            with transaction.atomic(using=using):
                cls.objects.using(using).create(name=name, holder=holder, acquired_at=now,
                                                expires_at=until)
        except IntegrityError:
            # Somebody holds it (or took it between our two statements).
            cls.objects.using(using).filter(name=name).update(skipped=F("skipped") + 1)
            return False
        return True

    @classmethod
    def renew(cls, name: str, holder: str, seconds: float, using: str = "default") -> bool:
        """Extend ``holder``'s lease; False when it lost it (it expired and was taken)."""
        until = timezone.now() + timedelta(seconds=seconds)
        return bool(cls.objects.using(using).filter(name=name, holder=holder).update(
            expires_at=until))

    @classmethod
    def release(cls, name: str, holder: str, using: str = "default") -> None:
        """Give the lease back (nothing happens if ``holder`` no longer has it); the
        row stays, with its count of skipped requests."""
        cls.objects.using(using).filter(name=name, holder=holder).update(
            holder="", expires_at=timezone.now())
