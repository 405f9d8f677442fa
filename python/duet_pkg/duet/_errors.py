"""duet's exceptions and the translation of C status codes into them."""
from __future__ import annotations

import ctypes

from . import _capi


class Error(Exception):
    """A failure reported by the engine (a model that cannot be loaded, an engine error).

    ``code`` is the C status name ("not found", "data loss", ...) and ``message`` the engine's
    message, which names the file and field at fault."""

    def __init__(self, message: str, code: str = "internal error"):
        super().__init__(message)
        self.message = message
        self.code = code


class CancelledError(Error):
    """The generation was cancelled by ``callback_on_step_end`` returning True."""


def check(status: int, err: ctypes.c_void_p, *, invalid=ValueError, rename=()):
    """Raises for a non-OK status: `invalid` (ValueError) for invalid arguments, CancelledError,
    else Error. `rename`: (C field name, Python argument name) pairs rewritten in the message."""
    if status == _capi.OK:
        return
    lib = _capi.load()
    msg = (lib.duet_error_message(err) or b"").decode("utf-8", "replace") if err else ""
    if err:
        lib.duet_error_free(err)
    for c_name, py_name in rename:
        msg = msg.replace(c_name, py_name)
    code = lib.duet_status_name(status).decode()
    if status == _capi.ERR_INVALID_ARGUMENT and invalid is not None:
        raise invalid(msg)
    if status == _capi.ERR_CANCELLED:
        raise CancelledError(msg, code)
    raise Error(msg, code)
