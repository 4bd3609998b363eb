"""What a selective restore did: the running tally its parts add to, and the frozen
:class:`SelectiveReport` with a human summary (:meth:`SelectiveReport.lines`). Names of what was
restored or skipped are addresses and domains (never a secret)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# kinds of settings objects, in the order the summary names them
KINDS = ("domain", "account", "alias", "ip range", "setting", "route", "dkim keys")
_PLURAL = {"domain": "domains", "account": "accounts", "alias": "aliases", "ip range": "ip ranges",
           "setting": "settings rows", "route": "outbound routes", "dkim keys": "domains' DKIM keys"}
SHOWN_NAMES = 10


@dataclass
class Tally:
    """Counts while a restore runs (its parts add to one tally)."""

    added: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    mailboxes: int = 0
    folders_created: int = 0
    folders_merged: int = 0
    messages_added: int = 0
    messages_kept_uid: int = 0  # added with the UID they had in the archive
    messages_present: int = 0  # the same content was in the live folder already: not added again
    messages_without_file: int = 0  # an index entry of the archive whose file it does not hold
    bytes_added: int = 0
    config_written: Path | None = None

    def add(self, kind: str, count: int = 1) -> None:
        self.added[kind] += count

    def skip(self, kind: str, name: str) -> None:
        self.skipped.setdefault(kind, []).append(name)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


@dataclass(frozen=True, slots=True)
class SelectiveReport:
    kind: str  # settings | domain | mailbox
    value: str | None  # the domain or the address
    archive: str  # the name of the archive restored from
    added: dict[str, int]
    skipped: dict[str, tuple[str, ...]]  # kind -> names already there (left as they are)
    mailboxes: int
    folders_created: int
    folders_merged: int
    messages_added: int
    messages_kept_uid: int
    messages_present: int
    messages_without_file: int
    bytes_added: int
    config_written: Path | None
    warnings: tuple[str, ...]

    @classmethod
    def of(cls, kind: str, value: str | None, archive: str, tally: Tally) -> SelectiveReport:
        return cls(kind, value, archive, dict(tally.added), {k: tuple(v) for k, v in tally.skipped.items()},
                   tally.mailboxes, tally.folders_created, tally.folders_merged, tally.messages_added,
                   tally.messages_kept_uid, tally.messages_present, tally.messages_without_file,
                   tally.bytes_added, tally.config_written, tuple(tally.warnings))

    @property
    def messages_new_uid(self) -> int:
        return self.messages_added - self.messages_kept_uid

    def lines(self) -> list[str]:
        what = "settings" if self.kind == "settings" else f"{self.kind} {self.value}"
        lines = [f"restored {what} from {self.archive}"]
        lines += self._settings_lines()
        if self.kind != "settings":
            lines.append(self._mail_line())
        if self.config_written is not None:
            lines.append(f"configuration file written to {self.config_written} (compare it with the live one; "
                         "the live file was not changed)")
        lines += [f"warning: {text}" for text in self.warnings]
        return lines

    def _settings_lines(self) -> list[str]:
        lines = []
        for kind in KINDS:
            added, skipped = self.added.get(kind, 0), self.skipped.get(kind, ())
            if not added and not skipped:
                continue
            text = f"{_PLURAL[kind]}: {added} added"
            if skipped:
                text += f", {len(skipped)} already there and left as they are ({_names(skipped)})"
            lines.append(text)
        return lines

    def _mail_line(self) -> str:
        text = (f"mail: {self.mailboxes} mailbox{'es' if self.mailboxes != 1 else ''}, "
                f"{self.folders_created} folders created, {self.folders_merged} merged; "
                f"{self.messages_added} messages added ({self.messages_kept_uid} with their archived UIDs, "
                f"{self.messages_new_uid} with new UIDs), {self.messages_present} already there")
        if self.messages_without_file:
            text += f", {self.messages_without_file} indexed in the archive without their file (not restored)"
        return text


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")
