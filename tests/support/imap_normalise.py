"""IMAP responses of two servers made comparable: a parser of complete server responses (with
their literals) into nested values, and a normaliser that rewrites what may legitimately differ
between two correct servers into a canonical form.

What is normalised, and why (everything else is compared as it is):

- the human-readable text after a status and its response code (RFC 9051 7.1): free text;
- UIDVALIDITY values (in ``[UIDVALIDITY]``, ``[APPENDUID]``, ``[COPYUID]``, STATUS): any 32-bit
  value is correct; each distinct value becomes ``V1``, ``V2``... in order of first appearance, so
  "same folder, same value" is still checked;
- MODSEQ values (``[HIGHESTMODSEQ]``, FETCH MODSEQ, STATUS HIGHESTMODSEQ, SEARCH/ESEARCH MODSEQ):
  only their order is defined (RFC 7162 3.1); each becomes ``M<rank>`` among the distinct values;
- INTERNALDATE: converted to UTC; a date within ``NOW_WINDOW`` of the run is the server's "now"
  and becomes ``<now>``; dates given by the client must match exactly (as instants);
- answers to CAPABILITY (the optional ``[CAPABILITY]`` codes are dropped): sorted, keeping only
  the capabilities of ``COMPARED_CAPABILITIES`` (what issue 12 requires); the others are listed
  per server by :func:`capability_extras`;
- the order of items inside a FETCH response, of flags and attributes, of LIST/LSUB/STATUS
  responses to one command, of SEARCH numbers, and the form of sequence sets (``1:3`` = ``1,2,3``);
- ID responses (server identity), quota root names and limits (configuration);
- response codes named in ``DROPPED_CODES``: informative codes that one server sends where the
  other may stay silent.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NOW_WINDOW = datetime.timedelta(minutes=10)

COMPARED_CAPABILITIES = frozenset({
    "IMAP4REV1", "STARTTLS", "LOGINDISABLED", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE",
    "CREATE-SPECIAL-USE", "NAMESPACE", "ENABLE", "CONDSTORE", "QRESYNC", "ESEARCH", "UNSELECT",
    "LIST-EXTENDED", "LIST-STATUS", "SASL-IR", "ID", "QUOTA", "BINARY", "SORT", "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "CHILDREN", "STATUS=SIZE", "AUTH=PLAIN",
    "AUTH=SCRAM-SHA-256",
})
# Informative response codes one correct server may send where another does not: RFC 9051 7.1
# leaves them optional. The reason is kept next to each.
DROPPED_CODES = {
    "CAPABILITY": "optional in the greeting and in LOGIN/AUTHENTICATE replies (RFC 9051 7.1); the "
                  "CAPABILITY command's answer is compared",
    "CLIENTBUG": "Dovecot's hint that a command was useless (e.g. STORE on no message)",
    "SERVERBUG": "server-internal",
    "ALERT": "free text for the user; servers differ in when they show one",
    "NOMODSEQ": "not sent by Dovecot: its mailboxes always have modseqs",
}


class Atom(str):
    """An atom (also numbers and NIL, kept as written)."""


@dataclass(frozen=True)
class Text:
    """A quoted string or a literal: their forms are equivalent (RFC 9051 4.3)."""

    value: bytes


Value = Atom | Text | list["Value"]


class ParseError(ValueError):
    pass


@dataclass
class Response:
    """One complete server response: ``kind`` is ``*``, ``+`` or the tag."""

    kind: str
    values: list[Value]
    status: str = ""  # OK/NO/BAD/BYE/PREAUTH for status responses
    code: list[Value] | None = None  # the [...] contents
    text: bytes = b""


_ATOM_END = b" ()[]{\"\r\n"
_STATUS = {"OK", "NO", "BAD", "BYE", "PREAUTH"}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def skip_spaces(self) -> None:
        while self.peek() == 0x20:
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.data) or self.data.startswith(b"\r\n", self.pos)

    def value(self) -> Value:
        char = self.peek()
        if char == ord("("):
            return self.list_(ord(")"))
        if char == ord('"'):
            return self.quoted()
        if char == ord("{") or (char == ord("~") and self.data[self.pos + 1:self.pos + 2] == b"{"):
            return self.literal()
        return self.atom()

    def list_(self, close: int) -> list[Value]:
        self.pos += 1
        items: list[Value] = []
        while True:
            self.skip_spaces()
            if self.peek() == close:
                self.pos += 1
                return items
            if self.at_end():
                raise ParseError(f"unclosed list at {self.pos}")
            items.append(self.value())

    def quoted(self) -> Text:
        self.pos += 1
        out = bytearray()
        while True:
            char = self.peek()
            if char in (-1, 0x0D, 0x0A):
                raise ParseError("unterminated quoted string")
            self.pos += 1
            if char == ord('"'):
                return Text(bytes(out))
            if char == ord("\\"):
                char = self.peek()
                self.pos += 1
            out.append(char)

    def literal(self) -> Text:
        if self.peek() == ord("~"):
            self.pos += 1
        end = self.data.index(b"}\r\n", self.pos)
        size = int(self.data[self.pos + 1:end].rstrip(b"+"))
        start = end + 3
        self.pos = start + size
        return Text(self.data[start:self.pos])

    def atom(self) -> Atom:
        start = self.pos
        while (char := self.peek()) != -1 and char not in _ATOM_END:
            self.pos += 1
        if self.peek() == ord("["):  # BODY[HEADER.FIELDS (A B)]<0.10>: brackets are part of the name
            depth = 0
            while (char := self.peek()) != -1:
                self.pos += 1
                depth += (char == ord("[")) - (char == ord("]"))
                if depth == 0:
                    break
            while (char := self.peek()) != -1 and char not in _ATOM_END:
                self.pos += 1
        if self.pos == start:
            raise ParseError(f"unexpected {self.data[self.pos:self.pos + 10]!r}")
        return Atom(self.data[start:self.pos].decode("utf-8", "replace"))

    def rest_of_line(self) -> bytes:
        end = self.data.find(b"\r\n", self.pos)
        end = len(self.data) if end < 0 else end
        text, self.pos = self.data[self.pos:end], end
        return text


def parse_response(data: bytes) -> Response:
    """Parse one complete response (literals inline, as read from the wire)."""
    reader = _Reader(data)
    kind = reader.atom() if reader.peek() != ord("+") else "+"
    if kind == "+":
        return Response("+", [], text=data[1:].strip())
    reader.skip_spaces()
    first = reader.atom() if not reader.at_end() else Atom("")
    if first.upper() in _STATUS:
        response = Response(str(kind), [], status=first.upper())
        reader.skip_spaces()
        if reader.peek() == ord("["):
            response.code = reader.list_(ord("]"))
        response.text = reader.rest_of_line().strip()
        return response
    values: list[Value] = [first]
    while True:
        reader.skip_spaces()
        if reader.at_end():
            return Response(str(kind), values)
        values.append(reader.value())


# --- normalising -------------------------------------------------------------------------------

@dataclass
class Context:
    """State shared by every response of one server's transcript."""

    now: datetime.datetime
    uidvalidities: dict[str, str] = field(default_factory=dict)
    modseq_ranks: dict[int, int] = field(default_factory=dict)

    def uidvalidity(self, value: str) -> str:
        return self.uidvalidities.setdefault(value, f"V{len(self.uidvalidities) + 1}")

    def modseq(self, value: str) -> str:
        if not value.isdigit():
            return value
        return f"M{self.modseq_ranks.get(int(value), 0)}"


def _upper(value: Value) -> str:
    return value.upper() if isinstance(value, Atom) else ""


def _sorted_flags(values: Value) -> list[Value]:
    assert isinstance(values, list)
    return sorted((Atom("\\" + v[1:].capitalize()) if isinstance(v, Atom) and v.startswith("\\") else v
                   for v in values), key=render)


def sequence_set(text: str) -> str:
    """``1,2,3,7:5`` -> ``1:3,5:7`` (numbers only; ``*`` left as is)."""
    numbers: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not (low.isdigit() and (not high or high.isdigit())):
            return text
        a, b = int(low), int(high or low)
        numbers.update(range(min(a, b), max(a, b) + 1))
    ranges: list[list[int]] = []
    for number in sorted(numbers):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in ranges)


def internaldate(value: Value, ctx: Context) -> Value:
    if not isinstance(value, Text):
        return value
    try:
        when = datetime.datetime.strptime(value.value.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return value
    if abs(when - ctx.now) < NOW_WINDOW:
        return Atom("<now>")
    return Atom(when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _fetch(items: list[Value], ctx: Context) -> list[Value]:
    pairs = [(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
    out: list[tuple[str, Value]] = []
    for name, value in pairs:
        key = re.sub(r"\s+", " ", str(name).upper())
        if key == "FLAGS":
            value = _sorted_flags(value)
        elif key == "INTERNALDATE":
            value = internaldate(value, ctx)
        elif key == "MODSEQ" and isinstance(value, list):
            value = [Atom(ctx.modseq(str(v))) for v in value]
        out.append((key, value))
    return [v for key, value in sorted(out, key=lambda p: p[0]) for v in (Atom(key), value)]


def _status_items(items: list[Value], ctx: Context) -> list[Value]:
    pairs = [(str(items[i]).upper(), items[i + 1]) for i in range(0, len(items) - 1, 2)]
    out = []
    for key, value in sorted(pairs, key=lambda p: p[0]):
        if key == "UIDVALIDITY":
            value = Atom(ctx.uidvalidity(str(value)))
        elif key == "HIGHESTMODSEQ":
            value = Atom(ctx.modseq(str(value)))
        out += [Atom(key), value]
    return out


def capabilities(values: Iterable[Value]) -> list[Value]:
    names = {str(v).upper() for v in values if isinstance(v, Atom)}
    return [Atom(n) for n in sorted(names & COMPARED_CAPABILITIES)]


def capability_extras(values: Iterable[Value]) -> list[str]:
    """The advertised capabilities that are not compared (to report, not to fail on)."""
    return sorted({str(v).upper() for v in values if isinstance(v, Atom)} - COMPARED_CAPABILITIES)


def _code(code: list[Value], ctx: Context) -> list[Value] | None:
    name = _upper(code[0]) if code else ""
    args = code[1:]
    if name in DROPPED_CODES:
        return None
    if name == "CAPABILITY":
        return [Atom(name), *capabilities(args)]
    if name == "UIDVALIDITY" and args:
        return [Atom(name), Atom(ctx.uidvalidity(str(args[0])))]
    if name in ("APPENDUID", "COPYUID") and args:
        rest = [Atom(sequence_set(str(a))) for a in args[1:]]
        return [Atom(name), Atom(ctx.uidvalidity(str(args[0]))), *rest]
    if name == "HIGHESTMODSEQ" and args:
        return [Atom(name), Atom(ctx.modseq(str(args[0])))]
    if name == "PERMANENTFLAGS" and args:
        return [Atom(name), _sorted_flags(args[0])]
    if name == "BADCHARSET":  # the list of supported charsets is optional (RFC 9051 7.1)
        return [Atom(name)]
    if name == "MODIFIED" and args:
        return [Atom(name), Atom(sequence_set(str(args[0])))]
    return [Atom(name), *args]


def _search(values: list[Value], ctx: Context) -> list[Value]:
    numbers = sorted((v for v in values[1:] if isinstance(v, Atom) and v.isdigit()), key=int)
    tail: list[Value] = [[Atom("MODSEQ"), Atom(ctx.modseq(str(v[1])))]
                         for v in values[1:] if isinstance(v, list) and len(v) == 2]
    return [values[0], *numbers, *tail]


def _esearch(values: list[Value], ctx: Context) -> list[Value]:
    out: list[Value] = [values[0]]
    rest = values[1:]
    if rest and isinstance(rest[0], list):
        out.append(rest.pop(0))
    if rest and _upper(rest[0]) == "UID":
        out.append(Atom("UID"))
        rest = rest[1:]
    for i in range(0, len(rest) - 1, 2):
        key, value = _upper(rest[i]), rest[i + 1]
        if key == "ALL":
            value = Atom(sequence_set(str(value)))
        elif key == "MODSEQ":
            value = Atom(ctx.modseq(str(value)))
        out += [Atom(key), value]
    return out


def _untagged(values: list[Value], ctx: Context) -> list[Value]:
    head = _upper(values[0])
    if head == "CAPABILITY":
        return [Atom(head), *capabilities(values[1:])]
    if head in ("LIST", "LSUB") and len(values) >= 4:
        name = values[3]
        name = Text(name.encode()) if isinstance(name, Atom) else name
        return [Atom(head), _sorted_flags(values[1]), values[2], name, *values[4:]]
    if head == "STATUS" and len(values) >= 3 and isinstance(values[2], list):
        name = values[1]
        name = Text(name.encode()) if isinstance(name, Atom) else name
        return [Atom(head), name, _status_items(values[2], ctx)]
    if head == "FLAGS" and len(values) == 2:
        return [Atom(head), _sorted_flags(values[1])]
    if head == "SEARCH":
        return _search(values, ctx)
    if head == "ESEARCH":
        return _esearch(values, ctx)
    if head == "ENABLED":
        return [Atom(head), *sorted((Atom(str(v).upper()) for v in values[1:]), key=str)]
    if head == "ID":
        return [Atom(head), Atom("<server identity>")]
    if head == "QUOTAROOT":
        return [Atom(head), values[1], *[Atom("<root>") for _ in values[2:]]]
    if head == "QUOTA" and len(values) == 3 and isinstance(values[2], list):
        usage = values[2]
        limits = [v for i in range(0, len(usage) - 2, 3) for v in (usage[i], usage[i + 1], Atom("<limit>"))]
        return [Atom(head), Atom("<root>"), limits]
    if head == "VANISHED":
        return [Atom(head), *values[1:-1], Atom(sequence_set(str(values[-1])))]
    if len(values) >= 2 and str(values[0]).isdigit() and _upper(values[1]) == "FETCH":
        return [values[0], Atom("FETCH"), _fetch(values[2], ctx) if isinstance(values[2], list) else values[2]]
    return values


def normalise(response: Response, ctx: Context) -> str:
    """One response in canonical text form."""
    if response.kind == "+":
        return "+"
    if response.status:
        code = _code(response.code, ctx) if response.code else None
        return f"{response.kind} {response.status}" + (f" [{render_list(code)}]" if code else "")
    return f"{response.kind} {render_list(_untagged(response.values, ctx))}"


_UNORDERED = {"LIST", "LSUB", "STATUS"}


def normalise_command(responses: Sequence[Response], ctx: Context) -> list[str]:
    """All responses to one command; untagged LIST/LSUB/STATUS (whose order is undefined) sorted."""
    lines = [normalise(r, ctx) for r in responses]
    head = [line for line, r in zip(lines, responses, strict=True) if _kind(r) in _UNORDERED]
    rest = [line for line, r in zip(lines, responses, strict=True) if _kind(r) not in _UNORDERED]
    return sorted(head) + rest if head else lines


def _kind(response: Response) -> str:
    return _upper(response.values[0]) if response.kind == "*" and response.values else ""


def collect_modseqs(responses: Iterable[Response], ctx: Context) -> None:
    """First pass: every MODSEQ value of the transcript, ranked."""
    found: set[int] = set()
    for response in responses:
        _modseqs_in(response, found)
    ctx.modseq_ranks = {value: rank for rank, value in enumerate(sorted(found), start=1)}


def _modseqs_in(response: Response, found: set[int]) -> None:
    code = response.code or []
    if code and _upper(code[0]) == "HIGHESTMODSEQ" and len(code) > 1:
        _add_number(code[1], found)
    values = response.values
    for i, value in enumerate(values):
        if isinstance(value, list):
            _modseqs_in_list(value, found)
        elif _upper(value) == "MODSEQ" and i + 1 < len(values):
            _add_number(values[i + 1], found)


def _modseqs_in_list(values: list[Value], found: set[int]) -> None:
    for i, value in enumerate(values):
        if isinstance(value, list):
            _modseqs_in_list(value, found)
        elif _upper(value) in ("MODSEQ", "HIGHESTMODSEQ") and i + 1 < len(values):
            following = values[i + 1]
            for item in following if isinstance(following, list) else [following]:
                _add_number(item, found)


def _add_number(value: Value, found: set[int]) -> None:
    if isinstance(value, Atom) and value.isdigit():
        found.add(int(value))


def render(value: Value) -> str:
    """Canonical text of a value; in strings CR shows as ``\\r`` (line breaks stay, for readable diffs)."""
    if isinstance(value, Atom):
        return str(value)
    if isinstance(value, Text):
        text = value.value.decode("utf-8", "backslashreplace").replace("\\", "\\\\").replace('"', '\\"')
        return '"' + text.replace("\r", "\\r") + '"'
    return "(" + render_list(value) + ")"


def render_list(values: Sequence[Value]) -> str:
    return " ".join(render(v) for v in values)
