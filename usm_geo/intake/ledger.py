"""The ledger: every input record that was not used, or was changed, with the reason.

Invariant (checked when a source is closed, tested for every reader)::

    rows read = rows used + rows in the ledger with status "dropped"

Statuses
--------
``dropped``  the record is not used (reason says why).
``changed``  the record is used after a documented change (e.g. lat/lon swapped back).
``kept``     the record is used as it is but deserves a note (e.g. an exact duplicate).
``note``     a remark about the whole file (``row`` is 0), e.g. a Latin-1 fallback.

``row`` is the 1-based data row in the source file (the header is not counted); ``record_id`` the
record's own id (the study's ``id`` column), empty when the study names none or for a file note.

``events`` is the number of events (incidents) the entry leaves out: 1 for a dropped point record,
0 for the other statuses; for an area-coded count source (one row may hold many events, see
:mod:`usm_geo.intake.counts`) the count of the row or value not used. Such a source is opened with
the events it holds, and its invariant holds in events too::

    events read = events used + sum of the ledger's events for that source
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS = ["source", "row", "status", "reason", "detail", "record_id", "events"]
STATUSES = ("dropped", "changed", "kept", "note")


@dataclass
class SourceTotals:
    path: str
    read: int = 0
    used: int | None = None
    events: int | None = None  # area-coded counts: events read (None: one event per record)
    events_used: int | None = None


@dataclass
class Ledger:
    """Collects ledger entries from every stage; vectorised (one call per reason, not per row)."""

    _parts: list[pd.DataFrame] = field(default_factory=list)
    _sources: dict[str, SourceTotals] = field(default_factory=dict)

    def open_source(self, source: str, path: str, read: int, events: int | None = None) -> None:
        """Register a source with the number of data records read from it (and, for area-coded
        counts, the number of events they hold)."""
        self._sources[source] = SourceTotals(path=str(path), read=int(read), events=None if events is None else int(events))

    def add(self, source: str, rows, status: str, reason: str, detail="", record_id=None, events=None) -> None:
        """Add entries for ``rows`` (1-based data rows) with one status and reason.

        ``detail`` is one string for all rows or an array-like with one string per row;
        ``record_id`` None (no id) or an array-like with each record's id; ``events`` the events
        each entry leaves out (None: 1 per dropped record, else 0).
        """
        if status not in STATUSES:
            raise ValueError(f"unknown ledger status {status!r}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            return
        if isinstance(detail, str):
            detail = np.full(rows.size, detail, dtype=object)
        else:
            detail = np.asarray(detail, dtype=object).reshape(-1)
            if detail.size != rows.size:
                raise ValueError("detail must have one entry per row")
        if record_id is None:
            record_id = np.full(rows.size, "", dtype=object)
        else:
            record_id = np.asarray(record_id, dtype=object).reshape(-1)
            if record_id.size != rows.size:
                raise ValueError("record_id must have one entry per row")
        if events is None:
            events = np.full(rows.size, 1 if status == "dropped" else 0, dtype=np.int64)
        else:
            events = np.broadcast_to(np.asarray(events, dtype=np.int64).reshape(-1), rows.shape)
        self._parts.append(
            pd.DataFrame(
                {
                    "source": source,
                    "row": rows,
                    "status": status,
                    "reason": reason,
                    "detail": detail.astype(str),
                    "record_id": record_id.astype(str),
                    "events": events,
                }
            )
        )

    def extend(self, entries: pd.DataFrame) -> None:
        """Add entries already in ledger form (``COLUMNS``), e.g. those of another ledger's
        :meth:`to_frame` (the parts of a dataset counted apart, see :mod:`usm_geo.scale`)."""
        if len(entries):
            if "record_id" not in entries:  # entries written before ledgers carried record ids
                entries = entries.assign(record_id="")
            if "events" not in entries:  # point records: one event per dropped record
                entries = entries.assign(events=(entries["status"] == "dropped").astype(np.int64))
            frame = entries[COLUMNS].reset_index(drop=True)
            self._parts.append(frame.astype({c: ("int64" if c in ("row", "events") else str) for c in COLUMNS}))

    def note(self, source: str, reason: str, detail: str) -> None:
        """A remark about a whole file (row 0)."""
        self.add(source, [0], "note", reason, detail)

    def dropped_rows(self, source: str) -> np.ndarray:
        """The sorted distinct rows of ``source`` with status ``dropped``; read part by part (no
        concatenated, sorted copy of the whole ledger: it is asked once per source closed)."""
        rows = [p.loc[((p["source"] == source) & (p["status"] == "dropped")).to_numpy(), "row"].to_numpy(dtype=np.int64)
                for p in self._parts]
        return np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)

    def close_source(self, source: str, used: int, events_used: int | None = None) -> None:
        """Record how many rows of ``source`` were used (and, for a source opened with events, how
        many events) and check the invariant in rows and in events.

        A violation is a bug in usm_geo, not a user error, so it raises AssertionError.
        """
        totals = self._sources[source]
        totals.used = int(used)
        dropped = self.dropped_rows(source)
        if totals.read != totals.used + dropped.size:
            raise AssertionError(
                f"ledger invariant broken for {source}: read {totals.read} != "
                f"used {totals.used} + dropped {dropped.size}"
            )
        if totals.events is not None:
            totals.events_used = int(events_used)
            frame = self.to_frame()
            left_out = int(frame.loc[frame["source"] == source, "events"].sum())
            if totals.events != totals.events_used + left_out:
                raise AssertionError(f"ledger invariant broken for {source}: events read {totals.events} != "
                                     f"used {totals.events_used} + left out {left_out}")

    def totals(self) -> dict[str, dict[str, int]]:
        """``{source: {"read", "used", "dropped"}}`` for every closed source, sorted by name; a
        source of area-coded counts adds ``events_read``, ``events_used``, ``events_dropped``."""
        out = {}
        for name in sorted(self._sources):
            t = self._sources[name]
            if t.used is None:
                continue
            out[name] = {"read": t.read, "used": t.used, "dropped": t.read - t.used}
            if t.events is not None:
                out[name].update(events_read=t.events, events_used=t.events_used, events_dropped=t.events - t.events_used)
        return out

    def paths(self) -> dict[str, str]:
        return {name: t.path for name, t in sorted(self._sources.items())}

    def to_frame(self) -> pd.DataFrame:
        """All entries, sorted by source, row, status and reason (deterministic)."""
        if not self._parts:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("row", "events") else object) for c in COLUMNS})
        frame = pd.concat(self._parts, ignore_index=True)
        self._parts = [frame]
        return frame.sort_values(["source", "row", "status", "reason"], kind="stable").reset_index(drop=True)

    def reason_counts(self) -> Counter:
        """Number of entries per ``(source, status, reason)``, file notes excluded."""
        frame = self.to_frame()
        frame = frame[frame["status"] != "note"]
        return Counter(
            {k: int(v) for k, v in frame.groupby(["source", "status", "reason"]).size().items()}
        )

    def summary(self, top: int = 5) -> str:
        """Plain-text totals per source and the most frequent reasons."""
        lines = []
        for name, t in self.totals().items():
            line = f"{name}: read {t['read']:,}, used {t['used']:,}, dropped {t['dropped']:,}"
            if "events_read" in t:
                line += f" rows; events read {t['events_read']:,}, used {t['events_used']:,}, left out {t['events_dropped']:,}"
            lines.append(line)
        counts = self.reason_counts()
        if counts:
            lines.append("top ledger reasons:")
            for (source, status, reason), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
                lines.append(f"  {n:>9,}  {source}: {reason} ({status})")
        return "\n".join(lines)
