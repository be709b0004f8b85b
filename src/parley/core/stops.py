"""Stop sequences, matched on the text as it streams (api-spec §5.1, §5.5).

Text that could be the start of a stop sequence is held back until it is
known not to be one, so a client never sees part of a stop sequence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StopMatch:
    text: str  # safe text before the match
    sequence: str


class StopSequenceMatcher:
    def __init__(self, sequences: tuple[str, ...]) -> None:
        self._sequences = sequences
        self._pending = ""

    def feed(self, text: str) -> str | StopMatch:
        """Returns the text that is safe to emit now, or the match that ends the reply."""
        if not self._sequences:
            return text
        buffer = self._pending + text
        earliest: tuple[int, str] | None = None
        for seq in self._sequences:
            at = buffer.find(seq)
            if at != -1 and (earliest is None or at < earliest[0]):
                earliest = (at, seq)
        if earliest is not None:
            self._pending = ""
            return StopMatch(buffer[: earliest[0]], earliest[1])
        hold = self._held_suffix(buffer)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending

    def _held_suffix(self, buffer: str) -> int:
        longest = 0
        for seq in self._sequences:
            for n in range(min(len(seq) - 1, len(buffer)), longest, -1):
                if buffer.endswith(seq[:n]):
                    longest = n
                    break
        return longest
