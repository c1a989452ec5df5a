"""The one exit-code table every ``smmdn`` command follows, and the error → exit-code mapping.

| code | meaning | operator's next step |
|---|---|---|
| 0 | ok | – |
| 1 | a check ran and failed (validation, rows still failing a release, a file or batch rejected) | read the report |
| 2 | bad usage or bad input (flags, dates, ids, files, registry) | fix the command or the input |
| 3 | the environment failed: database, network, permissions, disk | fix it and rerun; nothing was lost |
| 4 | an internal error (a bug) | rerun with ``--debug`` and report the traceback |

``smmdn validate`` keeps its documented 0/1/2. Errors print as one line (``error: … fix: …``); the
traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback

from smmdn.errors import CheckFailed, EnvironmentFault, InputError, SmmdnError, SourceError

OK = 0
CHECK_FAILED = 1
BAD_INPUT = 2
ENVIRONMENT = 3
INTERNAL = 4


def as_smmdn_error(exc: BaseException) -> SmmdnError | None:
    """Any exception as an smmdn error (database ones through the store's translation; OS ones as the
    environment's); ``None`` for a bug."""
    if isinstance(exc, SmmdnError):
        return exc
    from smmdn.store.errors import translate

    translated = translate(exc)
    if translated is not None:
        return translated
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return InputError(f"{exc.strerror or type(exc).__name__}: {exc.filename}",
                          fix="check the path (or the setting that names it)")
    if isinstance(exc, OSError):
        return EnvironmentFault(f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}",
                                fix="check permissions and free space (SMMDN_HOME and its directories), then rerun")
    return None


def exit_code(error: SmmdnError) -> int:
    """The table above for an smmdn error (an explicit ``exit_code`` attribute wins)."""
    explicit = getattr(error, "exit_code", None)
    if isinstance(explicit, int):
        return explicit
    if isinstance(error, CheckFailed):
        return CHECK_FAILED
    if isinstance(error, EnvironmentFault | SourceError):
        return ENVIRONMENT
    return BAD_INPUT


def report(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as one line (with the traceback under ``--debug``) and return its exit code."""
    from smmdn.redact import redact

    if debug:
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
    error = as_smmdn_error(exc)
    if error is None:
        line = f"internal error: {type(exc).__name__}: {exc}; fix: rerun with --debug and report the traceback"
        code = INTERNAL
    else:
        line, code = f"error: {error}", exit_code(error)
    print(redact(" ".join(line.split())), file=sys.stderr)
    return code
