"""Counter totals read from objects that come and go, that never go backwards.

The forwarding plane already counts what it does on its live objects (a down track's packets
sent, a source's keyframe requests, a peer's refused datagrams): Prometheus counters are read
from them at scrape time, with no metric work per packet.  An object that goes away (a
subscriber leaves) takes its totals with it; :class:`RunningTotals` keeps them:

* every object read is remembered (weakly) with the values last read and a label fixed at
  the first reading (a room's policy may be reloaded: the object's counts stay where they
  were counted, so no labelled series falls back);
* a remembered object's values only rise (each reading keeps the larger of old and new);
* once an object is garbage collected its last values move into a running sum per label.

The total of a label is that sum plus the remembered values of every object counted under it:
it never decreases.  What an object counted after its last reading and before it went is
missed unless it is read once more when it goes (:meth:`RunningTotals.note`, which the room
calls when a participant leaves).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

Label = tuple[str, ...]


class _Entry:
    __slots__ = ("key", "ref", "label", "values")

    def __init__(self, obj: object, label: Label, values: list[int], dead: list[_Entry]) -> None:
        self.key = id(obj)
        self.label = label
        self.values = values
        entry = self

        def collected(_ref: weakref.ref[object]) -> None:
            # only appends: it may run at any allocation, amid any other code
            dead.append(entry)

        self.ref = weakref.ref(obj, collected)


class RunningTotals:
    """Totals per label of ``width`` counters read from live objects (see the module)."""

    def __init__(self, width: int) -> None:
        self.width = width
        #: by id() of the object (checked against the weak reference: ids are reused)
        self._entries: dict[int, _Entry] = {}
        #: entries whose object was collected, to fold into :attr:`_retired` (appended to by
        #: weak reference callbacks, which may run in the middle of anything)
        self._dead: list[_Entry] = []
        self._retired: dict[Label, list[int]] = {}

    def note(self, obj: object, label: Label, values: Sequence[int]) -> None:
        """``obj``'s counters now (``label``: its label, if it is new here)."""
        if len(values) != self.width:
            raise ValueError(f"{len(values)} values, {self.width} expected")
        key = id(obj)
        entry = self._entries.get(key)
        if entry is None or entry.ref() is not obj:
            # new (an entry under the same id is of a collected object: _dead has it)
            self._entries[key] = _Entry(obj, label, list(values), self._dead)
            return
        old = entry.values
        for i, value in enumerate(values):
            if value > old[i]:
                old[i] = value

    def note_all(self, readings: Iterable[tuple[object, Label, Sequence[int]]]) -> None:
        for obj, label, values in readings:
            self.note(obj, label, values)

    def totals(self) -> dict[Label, list[int]]:
        """Per label: the objects gone, plus the objects remembered."""
        self._fold()
        out = {label: list(values) for label, values in self._retired.items()}
        for entry in list(self._entries.values()):
            into = out.get(entry.label)
            if into is None:
                out[entry.label] = list(entry.values)
            else:
                for i, value in enumerate(entry.values):
                    into[i] += value
        return out

    def __len__(self) -> int:
        """Objects remembered."""
        return len(self._entries)

    def _fold(self) -> None:
        while self._dead:
            entry = self._dead.pop()
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]
            into = self._retired.setdefault(entry.label, [0] * self.width)
            for i, value in enumerate(entry.values):
                into[i] += value
