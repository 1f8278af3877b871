#!/usr/bin/env python
"""Django's command-line utility for NeonPro."""

import atexit
import os
import signal
import sys
from contextlib import nullcontext

# Commands that serve requests: their events name the signed-in user, not whoever started them.
SERVING = (["serve"], ["runserver"], ["demo", "run"])


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    from django.core.management import execute_from_command_line

    from neonpro.audit.operator import operator_context

    serving = any(sys.argv[1 : 1 + len(command)] == command for command in SERVING)
    try:
        # Any other command (changepassword, createsuperuser, shell, ...) records the OS account
        # that ran it as the operator of its events; commands with --operator say more.
        with nullcontext() if serving else operator_context():
            execute_from_command_line(sys.argv)
    except BrokenPipeError:
        # The reader went away (`manage.py audit export | head`): stop quietly, as Unix tools do.
        # Python would otherwise print a traceback while flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE
    except KeyboardInterrupt:
        # Ctrl-C: stop without a traceback and let the caller see death by SIGINT (a shell's
        # exit 130), after the exit handlers Python would have run anyway.
        atexit._run_exitfuncs()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    main()
