"""Reading IMAP response text for the MIME tests: FETCH responses (as Dovecot writes them) into
nested Python values, and hardmail's generic values into the same form to compare them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hardmail.imap.values import Atom, Run
from hardmail.mime import sections
from hardmail.mime.headers import HeaderBlock, parse_header_block
from hardmail.mime.structure import crlf

CORPUS = Path(__file__).resolve().parent

_ATOM = re.compile(rb"[^\s()\[\]{}\"]+")
_NAME = re.compile(rb"[A-Z0-9.]+(\[[^\]]*\])?(<\d+>)?", re.I)


def parse_value(data: bytes, at: int) -> tuple[Any, int]:
    """One value at ``at``: NIL → None, number → int, string/literal → bytes, list → list."""
    while data[at:at + 1] == b" ":
        at += 1
    char = data[at:at + 1]
    if char == b"(":
        items, at = [], at + 1
        while True:
            while data[at:at + 1] == b" ":
                at += 1
            if data[at:at + 1] == b")":
                return items, at + 1
            value, at = parse_value(data, at)
            items.append(value)
    if char == b'"':
        out, at = bytearray(), at + 1
        while data[at] != 0x22:
            if data[at] == 0x5C:
                at += 1
            out.append(data[at])
            at += 1
        return bytes(out), at + 1
    if char in (b"{", b"~"):
        at += 1 if char == b"{" else 2
        end = data.index(b"}", at)
        size = int(data[at:end].rstrip(b"+"))
        start = end + 3
        return data[start:start + size], start + size
    found = _ATOM.match(data, at)
    assert found, data[at:at + 40]
    text = found.group()
    if text.upper() == b"NIL":
        return None, found.end()
    if text.isdigit():
        return int(text), found.end()
    return Atom(text.decode()), found.end()


def parse_fetch(data: bytes) -> dict[int, dict[str, Any]]:
    """``* n FETCH (...)`` responses by message number: item name (upper-case) → value."""
    out: dict[int, dict[str, Any]] = {}
    at = 0
    pattern = re.compile(rb"^\* (\d+) FETCH \(", re.M)
    while True:
        found = pattern.search(data, at)
        if found is None:
            return out
        items = out.setdefault(int(found.group(1)), {})
        at = found.end()
        while data[at:at + 1] != b")":
            while data[at:at + 1] == b" ":
                at += 1
            name = _NAME.match(data, at)
            assert name, data[at:at + 60]
            at = name.end()
            value, at = parse_value(data, at)
            items[name.group().decode("latin-1").upper()] = value
        at += 1


def normalise(value: Any) -> Any:
    """hardmail's generic value in the parsed form: str → bytes, Run spliced into its list."""
    if isinstance(value, Atom):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Run):
        raise TypeError("a Run belongs inside a list")
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        for item in value:
            if isinstance(item, Run):
                out.extend(normalise(inner) for inner in item)
            else:
                out.append(normalise(item))
        return out
    return value


def lower_strings(value: Any) -> Any:
    """Strings lower-cased (to compare type names and parameter names without case)."""
    if isinstance(value, bytes):
        return value.lower()
    if isinstance(value, list):
        return [lower_strings(item) for item in value]
    return value


@dataclass(frozen=True)
class StoredMessage:
    """A corpus message as the mailbox Dovecot was given held it (for SORT, THREAD, SEARCH)."""

    seq: int
    uid: int
    internaldate: datetime
    size: int
    headers: HeaderBlock
    name: str
    data: bytes


def mailbox_messages(expected: dict[str, Any], box: str) -> list[StoredMessage]:
    """The messages of ``expected[box]`` in Dovecot's sequence order, found by INTERNALDATE
    (make_expected.py gives the n-th file the n-th hour after ``internaldate_base``)."""
    entry = expected[box]
    folders = {"threads_mailbox": CORPUS / "threads", "threads_random_mailbox": CORPUS / "threads_random",
               "stdlib_mailbox": CORPUS / "stdlib"}
    folder = folders.get(box, CORPUS)
    info = parse_fetch(entry["answers"]["FETCH 1:* (INTERNALDATE RFC822.SIZE)"].encode("latin-1"))
    out = []
    for seq, items in sorted(info.items()):
        when = datetime.strptime(items["INTERNALDATE"].decode(), "%d-%b-%Y %H:%M:%S %z")
        name = entry["files"][int((when.timestamp() - entry["internaldate_base"]) // 3600)]
        data = crlf((folder / name).read_bytes())
        assert len(data) == items["RFC822.SIZE"], name
        out.append(StoredMessage(seq, seq, when, len(data), parse_header_block(data, bare_lf=True), name, data))
    return out


def untagged(answer: str, name: str) -> str:
    """The text after ``* NAME`` in a response (UTF-8)."""
    found = re.search(rf"\* {name} ?(.*)\r\n", answer.encode("latin-1").decode("utf-8"))
    assert found, answer
    return found.group(1)


@dataclass(frozen=True)
class Spec:
    part: tuple[int, ...]
    text: str | None
    fields: tuple[str, ...]


_ITEM = re.compile(r"(BODY\.PEEK|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?")
_SECTION = re.compile(r"([\d.]*?)\.?((?:HEADER\.FIELDS(?:\.NOT)?|HEADER|TEXT|MIME).*)?")


def spec(text: str) -> Spec:
    found = _SECTION.fullmatch(text)
    assert found
    numbers, name = found.group(1), found.group(2)
    fields: tuple[str, ...] = ()
    if name and " (" in name:
        name, listed = name.split(" (", 1)
        fields = tuple(listed.rstrip(")").split())
    return Spec(tuple(int(n) for n in numbers.split(".") if n), name, fields)


def ours_for(data: bytes, root: Any, item: str) -> Any:
    found = _ITEM.fullmatch(item)
    assert found
    kind, section, origin, count = found.groups()
    partial = (int(origin), int(count)) if origin else None
    wanted = spec(section)
    try:
        if kind == "BODY.PEEK":
            return sections.fetch_section(data, root, wanted, partial)
        if kind == "BINARY.PEEK":
            return sections.binary_section(data, root, wanted.part, partial)
        return sections.binary_size(data, root, wanted.part)
    except sections.UnknownCte:
        return "UNKNOWN-CTE"


def theirs_for(answer: str) -> Any:
    raw = answer.encode("latin-1")
    tagged = raw.rsplit(b"\r\n", 2)[-2]
    if b"[UNKNOWN-CTE]" in tagged:
        return "UNKNOWN-CTE"
    assert b" OK " in tagged, tagged
    values = list(parse_fetch(raw).get(1, {}).values())
    assert len(values) == 1
    return values[0]
