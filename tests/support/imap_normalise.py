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

# (CREATE-SPECIAL-USE is not compared: Dovecot 2.3 takes CREATE ... (USE (...)) without advertising it)
COMPARED_CAPABILITIES = frozenset({
    "IMAP4REV1", "STARTTLS", "LOGINDISABLED", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE",
    "NAMESPACE", "ENABLE", "CONDSTORE", "QRESYNC", "ESEARCH", "UNSELECT",
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
    # RFC 5530 codes that only add detail to a NO (one server names the reason, the other does not)
    "CANNOT": "RFC 5530 detail", "NONEXISTENT": "RFC 5530 detail", "NOPERM": "RFC 5530 detail",
    "ALREADYEXISTS": "RFC 5530 detail", "INUSE": "RFC 5530 detail", "EXPUNGEISSUED": "RFC 5530 detail",
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
    command: str = ""  # the command being answered (upper case), for the rules that depend on it
    condstore: bool = False  # a CONDSTORE-enabling command has succeeded (RFC 7162 3.1)

    def uidvalidity(self, value: str) -> str:
        return self.uidvalidities.setdefault(value, f"V{len(self.uidvalidities) + 1}")

    def modseq(self, value: str) -> str:
        """A placeholder; :func:`finish` ranks the values that are shown."""
        return f"\x00{value}\x00" if value.isdigit() else value


def _upper(value: Value) -> str:
    return value.upper() if isinstance(value, Atom) else ""


_CANONICAL = {name.lower(): name for name in (
    "\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent", "\\*", "\\HasChildren",
    "\\HasNoChildren", "\\Noselect", "\\NonExistent", "\\Noinferiors", "\\Marked", "\\Unmarked",
    "\\Subscribed", "\\Remote", "\\All", "\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")}
_CHILD_INFO = {"\\HasChildren", "\\HasNoChildren"}
_SPECIAL_USE = {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}


def _sorted_flags(values: Value, drop: frozenset[str] | set[str] = frozenset()) -> list[Value]:
    """Flags or attributes sorted, system ones in one spelling (they are case-insensitive)."""
    assert isinstance(values, list)
    canonical = [Atom(_CANONICAL.get(v.lower(), v)) if isinstance(v, Atom) and v.startswith("\\") else v
                 for v in values]
    return sorted((v for v in canonical if str(v) not in drop), key=render)


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
    if "LOGINDISABLED" in names or any(n.startswith("AUTH=") for n in names):
        names.discard("IDLE")  # before login: IDLE cannot be used yet; listing it is optional
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
    pairs = []
    for i in range(0, len(rest) - 1, 2):
        key, value = _upper(rest[i]), rest[i + 1]
        if key == "ALL":
            value = Atom(sequence_set(str(value)))
        elif key == "MODSEQ":
            value = Atom(ctx.modseq(str(value)))
        pairs.append((key, value))
    return out + [v for key, value in sorted(pairs, key=lambda p: p[0]) for v in (Atom(key), value)]


def _untagged(values: list[Value], ctx: Context) -> list[Value]:
    head = _upper(values[0])
    if head == "CAPABILITY":
        return [Atom(head), *capabilities(values[1:])]
    if head in ("LIST", "LSUB") and len(values) >= 4:
        name = values[3]
        name = Text(name.encode()) if isinstance(name, Atom) else name
        # RFC 5258 4: \HasChildren/\HasNoChildren may be sent unasked; compared only when asked for.
        # RFC 6154 defines special-use attributes for LIST; in LSUB they are optional.
        drop = set() if "CHILDREN" in ctx.command else set(_CHILD_INFO)
        drop |= _SPECIAL_USE if head == "LSUB" else set()
        return [Atom(head), _sorted_flags(values[1], drop), values[2], name, *values[4:]]
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
    if head == "ENABLED":  # an empty ENABLED is optional (RFC 5161 3.2)
        enabled = sorted((Atom(str(v).upper()) for v in values[1:]), key=str)
        return [Atom(head), *enabled] if enabled else []
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
    """One response in canonical text form ("" when it is not compared)."""
    if response.kind == "+":
        return "+"
    selecting = ctx.command.split(" ", 1)[0] in ("SELECT", "EXAMINE")
    if response.status:
        code = _code(response.code, ctx) if response.code else None
        if response.kind == "*" and response.code and code is None and response.status in ("OK", "NO", "BAD"):
            return ""  # only an informative code (e.g. Dovecot's * BAD [ALERT] about a plaintext password)
        name = str(code[0]) if code else ""
        if response.kind == "*" and name == "PERMANENTFLAGS" and not selecting:
            return ""  # announced new keywords: servers do it at different times (RFC 9051 7.3.5)
        if response.kind == "*" and name == "HIGHESTMODSEQ" and not ctx.condstore:
            return ""  # RFC 7162 3.1.2.1 asks for it in every SELECT; Dovecot sends it once CONDSTORE is on
        return f"{response.kind} {response.status}" + (f" [{render_list(code)}]" if code else "")
    values = _untagged(response.values, ctx)
    if not values or (_upper(values[0]) == "FLAGS" and not selecting):
        return ""
    if _upper(values[0]) == "CAPABILITY" and not ctx.command.startswith("CAPABILITY"):
        return ""  # unsolicited, like the optional [CAPABILITY] code (RFC 9051 7.2.2)
    return f"{response.kind} {render_list(values)}"


_UNORDERED = {"LIST", "LSUB", "STATUS"}
_ENABLES_CONDSTORE = re.compile(r"CONDSTORE|QRESYNC|MODSEQ|CHANGEDSINCE")


def normalise_command(responses: Sequence[Response], ctx: Context, command: str = "") -> list[str]:
    """All responses to ``command``: LIST/LSUB/STATUS (and everything SELECT sends before its
    tagged reply), whose order is undefined, sorted; a NO/BAD's continuations (a server may take
    the literal before refusing) left out."""
    ctx.command = re.sub(r"^UID ", "", command.upper())
    final = responses[-1].status if responses and responses[-1].kind not in ("*", "+") else ""
    if final == "OK" and _ENABLES_CONDSTORE.search(ctx.command):
        ctx.condstore = True
    lines = [normalise(r, ctx) for r in responses]
    keep = [(line, r) for line, r in zip(lines, responses, strict=True)
            if line and not (r.kind == "+" and final in ("NO", "BAD"))]
    if ctx.command.split(" ", 1)[0] in ("SELECT", "EXAMINE"):
        return sorted(line for line, r in keep if r.kind == "*") + [line for line, r in keep if r.kind != "*"]
    head = sorted(line for line, r in keep if _kind(r) in _UNORDERED)
    return head + [line for line, r in keep if _kind(r) not in _UNORDERED]


def _kind(response: Response) -> str:
    return _upper(response.values[0]) if response.kind == "*" and response.values else ""


_MARKER = re.compile("\x00(\\d+)\x00")


def finish(lines: list[str]) -> list[str]:
    """Replace MODSEQ placeholders by their rank among the values shown (``M1`` the lowest)."""
    shown = sorted({int(value) for line in lines for value in _MARKER.findall(line)})
    ranks = {value: rank for rank, value in enumerate(shown, start=1)}
    return [_MARKER.sub(lambda m: f"M{ranks[int(m.group(1))]}", line) for line in lines]


def collect_modseqs(responses: Iterable[Response], ctx: Context) -> None:
    """Every MODSEQ value of the responses, ranked (kept for callers of the first version;
    :func:`finish` ranks only the values that are shown)."""
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
