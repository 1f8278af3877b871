"""The security dashboard's data (``/admin/security/dashboard/``): one function per panel.

Guarantees: every panel holds ids, usernames (never a patient's: ``neonpro.audit.actors``),
counts, states and times, and nothing else — no patient name, identifier or record, no
break-glass reason (privacy officers read those in the grant's admin page, audited), no
detail of an audit event — so an administrator without clinical rights may see all of it.
Each panel is shown to those with its view permission (:data:`PANELS`); the page itself
needs :data:`PERMISSION`. The data keys panel is what ``keys status`` prints, from the same
service, beside the rotation policy; the audit chain is verified by ``audit verify``'s own
check, on demand.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum
from django.db.models.functions import TruncDate

from keys.conf import keys_settings
from keys.models import ReencryptionJob
from keys.rotation import keys_due_for_rotation
from keys.services import KeyRow, key_inventory
from neonpro.accounts import lockout
from neonpro.accounts.models import User
from neonpro.audit.actors import actor_labels
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import ChainReport, record_event, verify_chain
from patients.models import EmergencyAccessGrant

PERMISSION = "audit.view_auditevent"
DAYS = 14  # how far back the charts and lists go
RECENT = 20  # rows in each list
SIGNIN_FAILURES = ("auth.login_failed", "signin.mfa_failed", "signin.reauth_failed")
LOCKED_OUT = "signin.locked_out"
VERIFY_ACTION = "audit.verify"
UNKNOWN_ACCOUNT = "not a staff account (a patient's, or a name no account has)"
CHART_WIDTH, CHART_HEIGHT, CHART_GAP = 280, 80, 2


# -- Charts: bars per day, drawn by the template as inline SVG ---------------------------------


@dataclass(frozen=True)
class Bar:
    day: dt.date
    count: int
    x: int
    y: int
    height: int


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    total: int
    peak: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    bar_width: int = CHART_WIDTH // DAYS - CHART_GAP


def _days(now: dt.datetime) -> list[dt.date]:
    today = now.astimezone(dt.UTC).date()  # TruncDate groups in TIME_ZONE, which is UTC
    return [today - dt.timedelta(days=n) for n in range(DAYS - 1, -1, -1)]


def _since(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(_days(now)[0], dt.time(), tzinfo=dt.UTC)


def day_chart(events: QuerySet[AuditEvent], now: dt.datetime) -> Chart:
    """Bars of ``events`` per day over the last :data:`DAYS` days (one GROUP BY)."""
    days = _days(now)
    rows = events.filter(occurred_at__gte=_since(now)).annotate(day=TruncDate("occurred_at"))
    counts = dict(rows.order_by().values_list("day").annotate(n=Count("id")))
    peak = max(counts.values(), default=0)
    step = CHART_WIDTH // DAYS
    bars = []
    for n, day in enumerate(days):
        count = counts.get(day, 0)
        height = round(CHART_HEIGHT * count / peak) if peak else 0
        bars.append(Bar(day=day, count=count, x=n * step, y=CHART_HEIGHT - height, height=height))
    return Chart(bars=bars, total=sum(counts.values()), peak=peak)


# -- Data keys and re-encryption -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyLine:
    key: KeyRow
    max_age_days: int | None
    max_encryptions: int | None
    due: str  # why policy says this active key is due for rotation; "" when it is not

    @property
    def encryptions(self) -> str:
        return _count(self.key.encryption_count)

    @property
    def encryption_limit(self) -> str:
        return _count(self.max_encryptions) if self.max_encryptions else ""


def _count(n: int) -> str:
    """``2^62`` for the policy's powers of two, else ``10,000``."""
    return f"2^{n.bit_length() - 1}" if n >= 1 << 20 and n & (n - 1) == 0 else f"{n:,}"


def key_panel(now: dt.datetime) -> dict[str, Any]:
    """``keys status`` (the same inventory) against the rotation policy, grouped by purpose."""
    policy = keys_settings.ROTATION
    due = {d.key_id: d.reason for d in keys_due_for_rotation(now)}
    purposes: dict[str, list[KeyLine]] = {}
    for key in key_inventory(now):
        limits = policy.get(key.purpose, {})
        line = KeyLine(key, limits.get("max_age_days"), limits.get("max_encryptions"), due.get(key.id, ""))
        purposes.setdefault(key.purpose, []).append(line)
    return {"purposes": sorted(purposes.items()), "due": len(due)}


def reencryption_panel(now: dt.datetime) -> dict[str, Any]:
    """Re-encryption jobs under way (with their progress), and the last few that finished."""
    jobs = ReencryptionJob.objects.all()
    return {
        "running": list(jobs.filter(status=ReencryptionJob.Status.RUNNING).order_by("started_at", "id")),
        "finished": list(jobs.exclude(status=ReencryptionJob.Status.RUNNING).order_by("-updated_at", "-id")[:5]),
    }


# -- The audit chain -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    ok: bool
    at: dt.datetime
    by: str
    checked: int
    problems: int


def audit_panel(now: dt.datetime) -> dict[str, Any]:
    """The newest event, and the last on-demand verification (an ``audit.verify`` event)."""
    events = AuditEvent.objects.order_by("-id")
    last = events.filter(action=VERIFY_ACTION).first()
    verification = None
    if last is not None:
        verification = Verification(
            ok=last.outcome == AuditEvent.Outcome.SUCCESS,
            at=last.occurred_at,
            by=actor_labels([last.actor_id])[last.actor_id],
            checked=int(last.details.get("checked", 0)),
            problems=int(last.details.get("problems", 0)),
        )
    return {"newest": events.values("id", "occurred_at").first(), "verification": verification}


def verify_audit_chain() -> ChainReport:
    """``audit verify``'s check (``verify_chain``), recorded as an ``audit.verify`` event by the
    administrator who asked (success or error, with the counts): the panel's "last verified".
    Raises AuditUnavailableError when that event cannot be written."""
    report = verify_chain()
    record_event(
        VERIFY_ACTION,
        outcome=AuditEvent.Outcome.SUCCESS if report.ok else AuditEvent.Outcome.ERROR,
        resource_type="audit.auditevent",
        details={"checked": report.checked, "problems": len(report.problems)},
    )
    return report


# -- Break-glass and denied access ---------------------------------------------------------------


@dataclass(frozen=True)
class GrantLine:
    id: uuid.UUID
    clinician: str
    granted_at: dt.datetime
    state: str  # active, ended or expired
    duration: str  # how long it lasted (so far, while active)
    reviewed: bool
    outcome: str


def _duration(delta: dt.timedelta) -> str:
    hours, minutes = divmod(int(delta.total_seconds() // 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def break_glass_panel(now: dt.datetime) -> dict[str, Any]:
    """The newest break-glass uses: grant id, clinician, when, how long, reviewed or not."""
    grants = EmergencyAccessGrant.objects.order_by("-granted_at", "-id")
    outcomes = dict(EmergencyAccessGrant.ReviewOutcome.choices)
    lines = []
    # values(): the reason (encrypted free text) is never read, nor the patient.
    for g in grants.values("id", "clinician__username", "granted_at", "expires_at", "ended_at", "review_outcome")[
        :RECENT
    ]:
        if g["ended_at"] is not None:
            state, end = "ended", g["ended_at"]
        elif g["expires_at"] <= now:
            state, end = "expired", g["expires_at"]
        else:
            state, end = "active", now
        lines.append(
            GrantLine(
                id=g["id"],
                clinician=g["clinician__username"],
                granted_at=g["granted_at"],
                state=state,
                duration=_duration(end - g["granted_at"]),
                reviewed=bool(g["review_outcome"]),
                outcome=outcomes.get(g["review_outcome"], "awaiting review"),
            )
        )
    return {"grants": lines, "awaiting": grants.filter(reviewed_at__isnull=True).count()}


def denied_panel(now: dt.datetime) -> dict[str, Any]:
    """Refused accesses (events with outcome denied, sign-in failures aside): per day, and the newest."""
    denied = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED).exclude(
        action__in=(*SIGNIN_FAILURES, LOCKED_OUT)
    )
    rows = list(
        denied.filter(occurred_at__gte=_since(now))
        .order_by("-id")
        .values("id", "occurred_at", "action", "actor_id", "actor_role", "resource_type")[:RECENT]
    )
    labels = actor_labels(row["actor_id"] for row in rows)
    recent = [{**row, "actor": labels[row["actor_id"]]} for row in rows]
    return {"chart": day_chart(denied, now), "recent": recent}


# -- Sign-in failures and lock-outs --------------------------------------------------------------


@dataclass(frozen=True)
class Lockout:
    who: str  # a staff username, UNKNOWN_ACCOUNT, or a client address
    failures: int
    until: dt.datetime


def _staff_by_keyed_name() -> dict[str, str]:
    """Axes keeps usernames only keyed (neonpro.accounts.lockout): key every staff name to match."""
    accounts = User.objects.filter(is_active=True).exclude(role=User.Role.PATIENT).values_list("username", flat=True)
    return {keyed: username for username in accounts for keyed in lockout.keyed_usernames(username)}


def current_lockouts(now: dt.datetime) -> dict[str, list[Lockout]]:
    """Accounts and addresses locked now: their failures within the cool-off reach the limit."""
    cool_off = lockout.cool_off()
    recent = AccessAttempt.objects.filter(attempt_time__gte=now - cool_off).order_by()
    totals = {"failures": Sum("failures_since_start"), "last": Max("attempt_time")}
    accounts = list(
        recent.exclude(username=None)
        .values("username")
        .annotate(**totals)
        .filter(failures__gte=lockout.failure_limit())
        .order_by("-last")
    )
    addresses = (
        recent.values("ip_address")
        .annotate(**totals)
        .filter(failures__gte=int(settings.NEONPRO_SIGNIN_IP_FAILURE_LIMIT))
        .order_by("-last")
    )
    names = _staff_by_keyed_name() if accounts else {}
    return {
        "accounts": [
            Lockout(names.get(row["username"], UNKNOWN_ACCOUNT), row["failures"], row["last"] + cool_off)
            for row in accounts
        ],
        "addresses": [Lockout(row["ip_address"], row["failures"], row["last"] + cool_off) for row in addresses],
    }


def signin_panel(now: dt.datetime) -> dict[str, Any]:
    """Sign-in failures and lock-outs per day (from the audit log), and the lock-outs in force."""
    events = AuditEvent.objects.all()
    return {
        "failures": day_chart(events.filter(action__in=SIGNIN_FAILURES), now),
        "lockouts": day_chart(events.filter(action=LOCKED_OUT), now),
        "locked": current_lockouts(now),
    }


# (panel, the permission that shows it, what builds it)
PANELS: tuple[tuple[str, str, Callable[[dt.datetime], dict[str, Any]]], ...] = (
    ("data_keys", "keys.view_datakey", key_panel),
    ("reencryption", "keys.view_reencryptionjob", reencryption_panel),
    ("audit", PERMISSION, audit_panel),
    ("break_glass", "patients.view_emergencyaccessgrant", break_glass_panel),
    ("denied", PERMISSION, denied_panel),
    ("signin", "accounts.view_user", signin_panel),
)


def may_see(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def panels_for(user: Any, *, now: dt.datetime) -> dict[str, dict[str, Any]]:
    """The panels ``user`` may see, by name."""
    return {name: build(now) for name, permission, build in PANELS if user.has_perm(permission)}
