"""``/notifications/``: a person's own notices, and marking them read (POST forms)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from neonpro.accounts.notifications import mark_read, notices_for


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/notifications.html", {"notices": notices_for(request.user)})


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    mark_read(request.user, [pk])
    return redirect("notifications")


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    done = mark_read(request.user)
    messages.success(request, f"Marked {done} notice{'' if done == 1 else 's'} read.")
    return redirect("notifications")
