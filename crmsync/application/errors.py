"""What an admin operation can refuse, and why. The API maps each to an HTTP status and
a problem document; the CLI maps each to an exit status (crmsync.cli.main)."""

from __future__ import annotations

from typing import Any

from schemas.errors import RefuseInput


class AdminError(RefuseInput):
    """Base: ``status`` is the HTTP answer, the message is the problem's ``detail``."""

    status = 400

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFoundError(AdminError):
    """Nothing of that id in the caller's tenant (another tenant's looks the same)."""

    status = 404


class ConflictError(AdminError):
    """The request clashes with the current state (an active job, a name taken)."""

    status = 409


class InvalidError(AdminError):
    """Well-formed but unacceptable input; ``errors`` are per field, like pydantic's."""

    status = 422

    def __init__(self, detail: str, *, loc: str, msg: str, type_: str = "value_error") -> None:
        super().__init__(detail, errors=[{"loc": loc, "msg": msg, "type": type_}])


class UnavailableError(AdminError):
    """A dependency (Kafka) could not be reached: try again later."""

    status = 503
