"""The one error hierarchy: every error meant for users derives from UserError and says its kind.

Front ends map the kind to their own output, each in one place: the CLI to an exit status, the HTTP API
to a status code, the desktop app to a dialog's wording. Anything that is not a UserError is a bug and
is reported as one (traceback in the log).
"""

from __future__ import annotations

INVALID = "invalid"  # the request or input cannot be used (a bad image, a bad parameter)
NOT_FOUND = "not_found"  # an id or path that is not in the index
CONFIG = "config"  # a setting has a value that cannot be used (weights, backend, paths)
UNAVAILABLE = "unavailable"  # a server or the index cannot be reached or read right now
CONFLICT = "conflict"  # the index was built by another model, or is busy
UNSUPPORTED = "unsupported"  # a valid option this index cannot serve (exact search on Elasticsearch)

# User errors exit 1, except an option this index cannot serve: 2, argparse's own status for usage errors.
EXIT_STATUS = {INVALID: 1, NOT_FOUND: 1, CONFIG: 1, UNAVAILABLE: 1, CONFLICT: 1, UNSUPPORTED: 2}
HTTP_STATUS = {INVALID: 400, NOT_FOUND: 404, CONFIG: 503, UNAVAILABLE: 503, CONFLICT: 409, UNSUPPORTED: 400}


class UserError(Exception):
    """An error whose message is for users (no traceback); `kind` is one of the constants above and `title`
    names the problem in a few words (an HTTP error's `error`, a dialog's heading)."""

    kind: str = INVALID
    title: str = "Cannot do that"
