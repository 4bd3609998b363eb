"""The maildrop of one POP3 session: the INBOX as it was at login, numbered 1..n (RFC 1939 4).

Messages keep their number for the whole session; DELE only marks (RFC 1939 5), RSET unmarks, and
the marked messages are removed in the UPDATE state, by the session, after QUIT (RFC 1939 6).
Sizes are the octets RETR sends without byte-stuffing (see ``multiline.crlf_size``). The unique-id
is Dovecot's default ``%08Xu%08Xv`` (UID and UIDVALIDITY, upper-case hex), so it is stable across
sessions, stays the same when Dovecot and hardmail serve the same mailbox, and names the same
message as the IMAP UID of the INBOX (RFC 1939 7: 1 to 70 characters 0x21-0x7E).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hardmail.proto.pop3.replies import Pop3Reply, err, ok


def dovecot_uidl(uid: int, uidvalidity: int) -> str:
    """Dovecot's ``pop3_uidl_format = %08Xu%08Xv``."""
    return f"{uid:08X}{uidvalidity:08X}"


@dataclass(frozen=True, slots=True)
class DropMessage:
    uid: int
    size: int
    uidl: str


class Maildrop:
    """Numbers, sizes and deletion marks; every answer is a ready Pop3Reply or a message."""

    def __init__(self, messages: Sequence[DropMessage]) -> None:
        self.messages = tuple(messages)
        self.deleted: set[int] = set()  # message numbers marked by DELE

    def __len__(self) -> int:
        return len(self.messages)

    def live(self) -> list[tuple[int, DropMessage]]:
        return [(n, m) for n, m in enumerate(self.messages, 1) if n not in self.deleted]

    def stat(self) -> Pop3Reply:
        live = self.live()
        return ok(f"{len(live)} {sum(m.size for _, m in live)}")  # RFC 1939 5 STAT: "nn mm"

    def message(self, argument: str) -> DropMessage | Pop3Reply:
        """The message a "msg" argument names, or the -ERR to send."""
        if not argument.isdigit() or not argument.isascii() or len(argument) > 10:
            return err(f"Invalid message number: {argument[:20]}")
        number = int(argument)
        if not 1 <= number <= len(self.messages):
            return err(f"There's no message {number}.")
        if number in self.deleted:
            return err("Message is deleted.")
        return self.messages[number - 1]

    def scan_listing(self, argument: str | None) -> Pop3Reply:
        """LIST (RFC 1939 5): "n size" for one message, or every message not marked."""
        if argument is None:
            live = self.live()
            return ok(f"{len(live)} messages:", tuple(f"{n} {m.size}" for n, m in live))
        found = self.message(argument)
        return found if isinstance(found, Pop3Reply) else ok(f"{argument.lstrip('0')} {found.size}")

    def uid_listing(self, argument: str | None) -> Pop3Reply:
        """UIDL (RFC 1939 7)."""
        if argument is None:
            return ok("", tuple(f"{n} {m.uidl}" for n, m in self.live()))
        found = self.message(argument)
        return found if isinstance(found, Pop3Reply) else ok(f"{argument.lstrip('0')} {found.uidl}")

    def mark(self, argument: str) -> Pop3Reply:
        found = self.message(argument)
        if isinstance(found, Pop3Reply):
            return found
        self.deleted.add(int(argument))
        return ok("Marked to be deleted.")

    def reset(self) -> Pop3Reply:
        self.deleted.clear()
        return ok("")

    def deleted_uids(self) -> tuple[int, ...]:
        return tuple(self.messages[n - 1].uid for n in sorted(self.deleted))
