"""The project's own errors for refusals that are not about the input's shape.

Services raise them; the API's one exception handler (project/api_errors.py) answers them, and
the pages show their message.
"""

from __future__ import annotations


class Conflict(Exception):
    """The request is well formed, but the thing it names is in a state that refuses it (an API 409).

    `state` says what that state is, e.g. {"status": "succeeded"}, so a script need not ask again.
    """

    def __init__(self, message: str, *, state: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.state = state or {}
