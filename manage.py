#!/usr/bin/env python
"""Django's command-line utility for NeonPro."""

import atexit
import os
import signal
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    from django.core.management import execute_from_command_line

    try:
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
