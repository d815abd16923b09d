"""Pure, sans-I/O protocol code shared by the client engine and the reference server.

Nothing here opens a socket, starts a thread or touches a widget: functions build request
heads and bodies and judge answers, so each is testable with plain bytes.

- :mod:`.ranges`: half-open byte interval sets (``0-102400,204800-307200``).
- :mod:`.multipart`: the streaming ``multipart/form-data`` encoder.
- :mod:`.lenient`: tolerant parsing of JSON-ish server answers.
- :mod:`.uploader`: the DCloud HTML5+ uploader protocol (query, chunks, plain, errors).
- :mod:`.wcs`: Wangsu Cloud Storage append upload (tokens, etag, append).
"""

from .errors import ProtocolError, TokenError
from .ranges import ByteRange, RangeSet

__all__ = ["PROTOCOLS", "ByteRange", "ProtocolError", "RangeSet", "TokenError"]

#: The upload protocols a task can speak: ``uploader`` (resumable, falls back to plain),
#: ``plain`` (one multipart POST) and ``wcs-append``. Front ends offer exactly these.
PROTOCOLS = ("uploader", "plain", "wcs-append")
