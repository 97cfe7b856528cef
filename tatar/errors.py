"""Expected failures: bad input, a policy that stopped a stage, a model that cannot be loaded.

The CLI prints these as one clear message (no traceback; ``--debug`` or ``TATAR_DEBUG=1`` shows it) and exits
with the error's ``exit_code``: 2 for usage and configuration errors, 1 for data and policy failures. Anything
else is a bug and keeps its traceback. The subclasses also derive from the built-in exception the code raised
before (ValueError, KeyError, FileNotFoundError), so callers that catch those keep working.
"""

from __future__ import annotations

import errno
import os
import re

DEBUG_ENV = "TATAR_DEBUG"


class TatarError(RuntimeError):
    """A failure whose message tells the user what is wrong and which record, key or file is at fault."""

    exit_code = 1

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UsageError(TatarError):
    """A bad argument or configuration value: fix the command line or params.yaml."""

    exit_code = 2


class DataError(TatarError):
    """An input file or record that cannot be used as it is; the message names the file and line or record."""


class TransientError(TatarError):
    """A failure that may pass on a retry (an endpoint down, a transport error): the orchestrator retries it."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h)


class ConfigValueError(UsageError, ValueError):
    """A configuration value the code cannot work with (checked where it is used, not by the schema)."""


class UnknownNameError(UsageError, KeyError):
    """A name (benchmark, photograph, stage) that is not one of the known ones; the message lists them."""


class InvalidDataError(DataError, ValueError):
    """A data file whose content is malformed (torn line, wrong type, missing field)."""


class MissingInputError(DataError, FileNotFoundError):
    """An input file or folder a stage needs does not exist; the message says which stage or command makes it."""


# OS errors a user can act on (a full disk, a read-only folder, a missing path): one line, not a traceback.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.EISDIR,
                   errno.ENOTDIR, errno.ENAMETOOLONG}


# Exception classes of the HTTP stack (openai, httpx) that mean "the endpoint or the network", matched by name so
# this module imports neither.
_TRANSIENT_NAMES = {"APIConnectionError", "APITimeoutError", "InternalServerError", "RateLimitError",
                    "TransportError", "TimeoutException", "NetworkError", "RemoteProtocolError"}
_EXITED_WITH = re.compile(r"exited with (-?\d+)")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (TransientError, ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES and cls.__module__.split(".")[0] in ("openai", "httpx")
               for cls in type(exc).__mro__)


def stage_exit_status(exc: BaseException) -> int | None:
    """The exit status of a stage command that DVC reports ("failed to run: ..., exited with N") anywhere in the
    exception's chain, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if found := _EXITED_WITH.search(str(exc)):
            return int(found.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def may_pass_on_retry(exc: BaseException) -> bool:
    """Retry a stage only for what a retry can fix: a transient error (exit 75), or a command killed by a signal
    (an interrupted training run resumes from its checkpoint). Usage (2) and data/policy (1) failures are
    deterministic: retrying them only repeats the same message."""
    if is_transient(exc):
        return True
    status = stage_exit_status(exc)
    return status is not None and (status == TransientError.exit_code or status < 0 or status > 128)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def user_facing(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an expected failure, None for a bug (which keeps its traceback)."""
    if isinstance(exc, TatarError):
        return str(exc), exc.exit_code
    if is_transient(exc):
        return f"{type(exc).__name__}: {exc} (transient: re-run to retry)", TransientError.exit_code
    if isinstance(exc, OSError) and exc.errno in _USER_OS_ERRORS:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}{': ' if where else ''}{exc.strerror or exc}", 1
    return None
