"""``manage.py serve`` with a CPU-time account of the crypto core, for bench/api.py.

    OPENSSL_CONF=... python bench/api_server.py serve --host 127.0.0.1 --port N

The production TLS server (uvicorn, TLS 1.3), unchanged, except that the entry points of
``keys.crypto`` — ``encrypt``, ``decrypt`` (field encryption and decryption), ``blind_index``,
``blind_index_candidates`` (blind indexing), ``sign``, ``sign_all`` and ``verify_signature``
(row seals, the signed RLS identity, cursors, the audit chain) — are wrapped with a timer of the calling
thread's CPU time (``time.thread_time_ns``; a nested call counts once), in ``keys.crypto``
and in every module that imported them by name — and so are every encrypted field's reader
and sealer (``keys.sealing``: decryption; encryption with the blind indexes of a searchable
field). Django's views run
on worker threads, so this is the CPU the server spends in them, whichever thread.

Signals from bench/api.py: SIGUSR1 starts a window (zeroes the counters and notes the
process's CPU time), SIGUSR2 writes the window's figures as JSON to
``NEONPRO_BENCH_PROFILE_OUT``: per function group the CPU seconds and calls, and the
process's CPU seconds over the window (``time.process_time``: every thread).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))

GROUPS = {
    "encrypt": "encryption",
    "decrypt": "decryption",
    "blind_index": "blind_index",
    "blind_index_candidates": "blind_index",
    "index_token": "blind_index",
    "sign": "mac",
    "sign_all": "mac",
    "verify_signature": "mac",
}
_lock = threading.Lock()
_inside = threading.local()
_ns: dict[str, int] = dict.fromkeys(GROUPS.values(), 0)
_calls: dict[str, int] = dict.fromkeys(GROUPS.values(), 0)
_window: dict[str, float] = {"process_cpu": 0.0, "wall": 0.0}


def _timed(group: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "active", False):
            return fn(*args, **kwargs)
        _inside.active = True
        started = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time_ns() - started
            _inside.active = False
            with _lock:
                _ns[group] += spent
                _calls[group] += 1

    return wrapper


def install() -> None:
    """Wrap the functions in ``keys.crypto`` and wherever a module imported them by name."""
    from keys import crypto

    wrapped = {}
    for name, group in GROUPS.items():
        original = getattr(crypto, name)
        wrapped[id(original)] = _timed(group, original)
    for module in list(sys.modules.values()):
        for attribute, value in list(vars(module).items()) if module is not None else ():
            if callable(value) and id(value) in wrapped:
                setattr(module, attribute, wrapped[id(value)])
    # Each encrypted field reads and seals through closures it built when its model class was
    # made (keys/sealing.py): wrap them on the fields (a searchable field's sealer also
    # computes its blind indexes).
    from django.apps import apps

    from keys.fields import EncryptedMixin

    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, EncryptedMixin):
                field._read = _timed("decryption", field._read)  # type: ignore[method-assign]
                field._seal = _timed("encryption", field._seal)  # type: ignore[method-assign]


def _start(*_: Any) -> None:
    with _lock:
        for group in _ns:
            _ns[group] = 0
            _calls[group] = 0
        _window.update(process_cpu=time.process_time(), wall=time.monotonic())


def _dump(*_: Any) -> None:
    with _lock:
        figures = {
            "process_cpu_s": round(time.process_time() - _window["process_cpu"], 4),
            "wall_s": round(time.monotonic() - _window["wall"], 4),
            "cpu_s": {group: round(ns / 1e9, 4) for group, ns in _ns.items()},
            "calls": dict(_calls),
        }
    out = Path(os.environ["NEONPRO_BENCH_PROFILE_OUT"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures))
    tmp.replace(out)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    import django

    django.setup()
    install()
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
