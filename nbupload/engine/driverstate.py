"""What a driver carries from one run of a task to the next, and how the journal writes it.

A driver learns things a later run (in this process or, through the journal, in another)
must not learn again the hard way: whether the uploader server took a resume query
(``mode``; a session known to be resumable treats a bad query answer as retryable, not as
a switch to plain), why it fell back to plain (``plain_reason``), and for WCS the position
the object has reached and the size of the next append (a replay after a restart must be
the same append to be judged as ours). :class:`DriverState` holds exactly that, typed and
frozen: a driver reads it from its run handle and hands back a changed copy
(``handle.set_driver_state(replace(state, position=...))``), so no run shares a mutable
dict with the task or the journal.

In the journal it is the entry's ``"extra"`` object, with the keys it always had
(``mode``, ``plain_reason``, ``position``, ``append_size``), so entries written before this
class existed load unchanged. The same object holds the task's labels (``label.<name>``,
:func:`split_extra`), which are the front end's notes, not driver state. Keys this version
does not know are kept (scalars only) and written back, so an entry passed through an older
process loses nothing a newer one wrote. Nothing secret is ever in it: it holds no header,
field, URL or credential, only these protocol facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LABEL_PREFIX", "DriverState", "join_extra", "labels_of", "split_extra"]

#: labels live in the journal's ``extra`` object under this prefix
LABEL_PREFIX = "label."
_KNOWN = frozenset({"mode", "plain_reason", "position", "append_size"})
_SCALAR = (str, int, float, bool, type(None))
_MODES = frozenset({"resumable", "plain"})


@dataclass(frozen=True)
class DriverState:
    """The driver state of one task (see the module docstring).

    ``mode``: ``"resumable"`` once the uploader server answered a resume query, ``"plain"``
    once it did not (``None``: not asked yet); ``plain_reason``: what the query answer was
    instead. ``position``: the WCS object's length as this task last confirmed it (the
    client's own record that judges a replay); ``append_size``: the length of the append at
    ``position`` (``None``: the task's starting chunk size). ``other``: keys of the journal's
    ``extra`` this version does not know, written back as they were.
    """

    mode: str | None = None
    plain_reason: str | None = None
    position: int = 0
    append_size: int | None = None
    other: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in _MODES:
            raise ValueError(f"driver mode must be 'resumable' or 'plain', not {self.mode!r}")
        if self.position < 0:
            raise ValueError(f"a WCS position cannot be negative ({self.position})")
        if self.append_size is not None and self.append_size <= 0:
            raise ValueError(f"an append size must be positive ({self.append_size})")

    @property
    def resumable(self) -> bool:
        """Whether the server is known to keep this task's uploader session."""
        return self.mode == "resumable"

    def to_json(self) -> dict[str, Any]:
        """The journal's keys, only those set (as the dict it replaces wrote them)."""
        out: dict[str, Any] = {k: v for k, v in self.other.items() if k not in _KNOWN}
        if self.mode is not None:
            out["mode"] = self.mode
        if self.plain_reason is not None:
            out["plain_reason"] = self.plain_reason
        if self.position:
            out["position"] = self.position
        if self.append_size is not None:
            out["append_size"] = self.append_size
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> DriverState:
        """Read the journal's keys (label keys are not driver state: see :func:`split_extra`).

        Raises ``ValueError`` (or ``TypeError``) when a known key holds something it never
        could (a position that is not a whole number): a WCS task resumed from a made-up
        position would be judged against the wrong length, so such an entry is refused, as a
        malformed entry is, rather than read as position 0.
        """
        d = d or {}
        mode = d.get("mode")
        reason = d.get("plain_reason")
        size = d.get("append_size")
        return cls(
            mode=mode if mode in _MODES else None,  # a mode this version does not know: ask again
            plain_reason=str(reason) if reason is not None else None,
            position=_whole(d.get("position") or 0, "position"),
            append_size=_whole(size, "append_size") if size else None,
            other={
                str(k): v
                for k, v in d.items()
                if k not in _KNOWN and not str(k).startswith(LABEL_PREFIX) and isinstance(v, _SCALAR)
            },
        )


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"journal extra {name!r} is not a whole number: {value!r}")
    return int(value)


def labels_of(extra: Any) -> dict[str, str]:
    """The labels in a journal's ``extra`` object (``{}`` when it is not an object: listing
    unfinished tasks never fails on one odd entry)."""
    if not isinstance(extra, Mapping):
        return {}
    return {str(k)[len(LABEL_PREFIX) :]: str(v) for k, v in extra.items() if str(k).startswith(LABEL_PREFIX)}


def split_extra(extra: Any) -> tuple[DriverState, dict[str, str]]:
    """The journal's ``extra`` object as the driver state and the task's labels."""
    extra = extra or {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"journal extra is not an object: {type(extra).__name__}")
    return DriverState.from_json(extra), labels_of(extra)


def join_extra(state: DriverState, labels: Mapping[str, str]) -> dict[str, Any]:
    """The journal's ``extra`` object: the driver state's keys and the labels (prefixed)."""
    out = state.to_json()
    out.update({LABEL_PREFIX + str(k): str(v) for k, v in labels.items()})
    return out
