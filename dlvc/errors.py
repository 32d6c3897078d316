"""How the top-level scripts end when what the user asked for cannot be done.

A missing dataset, a missing weight file or a bad combination of flags is for the
user to fix, not a bug, so a script ends with one line in argparse's style instead of
a traceback:

    train.py: error: --finetune: no file at runs/city-segformer/model_encoder.pt

The exit status says which: 2 for a bad flag or combination of flags (as argparse's
own errors), 1 for a file or dataset that is missing (or a run folder that already
holds a run). The kit reports these as FileNotFoundError, FileExistsError and
ValueError; :func:`checking_input` turns those into :class:`InputError` while the
scripts build what the flags describe, and :func:`exit_on_input_error` prints it.
Every other exception, and any exception once training has started, keeps its
traceback.
"""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

BAD_FLAGS = 2
"""Exit status for a bad flag or combination of flags, as argparse's."""
MISSING_FILE = 1
"""Exit status for a missing file or dataset, or a run folder that already holds a run."""


class InputError(SystemExit):
    """What the user asked for cannot be done; the message says what to change.

    A SystemExit, so that code calling the kit without :func:`exit_on_input_error`
    still ends with the message (and status 1) rather than a traceback.

    Args:
        message: what is wrong, starting with the flag it concerns.
        exit_status: :data:`BAD_FLAGS` or :data:`MISSING_FILE`.
    """

    def __init__(self, message: str, exit_status: int = BAD_FLAGS):
        super().__init__(message)
        self.exit_status = exit_status


@contextlib.contextmanager
def checking_input(flag: str | None = None) -> Iterator[None]:
    """Report a FileNotFoundError, FileExistsError or ValueError raised inside as an :class:`InputError`.

    Args:
        flag: put before the message (``"--finetune"``), when the error's own
            message does not say which flag it concerns.
    """
    try:
        yield
    except (FileNotFoundError, FileExistsError) as error:
        raise InputError(_message(error, flag), MISSING_FILE) from error
    except ValueError as error:
        raise InputError(_message(error, flag), BAD_FLAGS) from error


def exit_on_input_error(main: Callable, *arguments):
    """``main(*arguments)``; an :class:`InputError` ends the script with ``<script>: error: <message>`` on stderr."""
    try:
        return main(*arguments)
    except InputError as error:
        print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_status) from None


def _message(error: Exception, flag: str | None) -> str:
    return f"{flag}: {error}" if flag else str(error)
