"""What to do after an answer: the one place each protocol's retry rules are written.

:func:`nbupload.protocols.uploader.classify_chunk` and ``classify_query`` turn an answer into
a :class:`Verdict`; the engine's drivers act on verdicts and hold no status lists of their
own. :data:`RETRYABLE_STATUS` is shared by both protocols.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["RETRYABLE_STATUS", "Verdict", "VerdictKind", "is_retryable_status"]

#: Statuses worth another try: the request may succeed later as it is.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or (500 <= status < 600 and status not in (501, 505))


class VerdictKind(str, enum.Enum):
    OK = "ok"
    RETRY = "retry"  # may succeed later as it is (after asking the server what it holds)
    FATAL = "fatal"  # cannot succeed as it is
    REDIRECT = "redirect"  # the data request is never redirected: tell the user where
    TOO_LARGE = "too-large"  # this request was too big: try a smaller one
    PLAIN = "plain"  # (query) no resume here: fall back to one plain upload


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    location: str | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in (VerdictKind.RETRY, VerdictKind.TOO_LARGE)
