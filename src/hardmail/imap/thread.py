"""THREAD (RFC 5256): ORDEREDSUBJECT (4, first paragraph) and REFERENCES (4: the threading of
jwz with base subjects), over message descriptors given in sequence order (ties keep that order),
and the thread-list text of the THREAD response (RFC 5256 4: ``(2)(3 6 (4 23)(44 7 96))``).
Pure."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic

from hardmail.imap.sort import M, base_subject_and_reply, casemap, sent_date, subject_of
from hardmail.mime.headers import HeaderBlock

THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
MAX_REFERENCES = 100  # msg-ids read from one References field (its last ones)
_MSG_ID = re.compile(rb"<([^<>\s]+)>")


@dataclass(eq=False)
class ThreadNode(Generic[M]):
    """A thread member: a message (None for a dummy that only joins its children) and its
    children, in order."""

    message: M | None
    children: list[ThreadNode[M]] = field(default_factory=list)


@dataclass(eq=False)
class _Container(Generic[M]):
    message: M | None = None
    order: int = -1  # the message's sequence position
    date: float = 0.0
    parent: _Container[M] | None = None
    children: list[_Container[M]] = field(default_factory=list)

    def is_ancestor_of(self, other: _Container[M]) -> bool:
        """Whether ``other`` is this container or below it (a link would make a loop)."""
        if not self.children:  # the usual case, without a walk up a long thread
            return other is self
        node: _Container[M] | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def link_under(self, parent: _Container[M]) -> None:
        self.unlink()
        self.parent = parent
        parent.children.append(self)


def _ids(block: HeaderBlock, name: str) -> list[bytes]:
    found = block.named(name)
    if not found:
        return []
    return [m.group(1) for m in _MSG_ID.finditer(block.raw_value(found[0]))]


def _references(block: HeaderBlock) -> list[bytes]:
    """RFC 5256 4 (1)(B): References, else the first message id of In-Reply-To."""
    references = _ids(block, "references")
    if references:
        return references[-MAX_REFERENCES:]
    return _ids(block, "in-reply-to")[:1]


def _sort_key(container: _Container[M]) -> tuple[float, int]:
    """Sent date, then sequence; a dummy takes its first child's (RFC 5256 4 (5), (7))."""
    node = container
    while node.message is None and node.children:
        node = node.children[0]
    return node.date, node.order


def _sort_tree(containers: list[_Container[M]]) -> None:
    """RFC 5256 4 (7): each set of siblings by sent date, children first (dummies' dates)."""
    stack = [containers]
    order: list[list[_Container[M]]] = []
    while stack:
        siblings = stack.pop()
        order.append(siblings)
        stack.extend(child.children for child in siblings if child.children)
    for siblings in reversed(order):  # the deepest first, so a dummy's first child is known
        siblings.sort(key=_sort_key)


def _build(messages: Sequence[M]) -> list[_Container[M]]:
    """RFC 5256 4 (1), (2): the containers linked by Message-ID and References; the root set."""
    table: dict[bytes, _Container[M]] = {}
    everything: list[_Container[M]] = []

    def container(message_id: bytes) -> _Container[M]:
        if message_id not in table:
            table[message_id] = _Container()
            everything.append(table[message_id])
        return table[message_id]

    for order, message in enumerate(messages):
        ids = _ids(message.headers, "message-id")
        own = container(ids[0]) if ids else None
        if own is None or own.message is not None:  # (A): no id, or a duplicate: a unique one
            own = _Container()
            everything.append(own)
        own.message, own.order, own.date = message, order, sent_date(message)
        _link_references(own, [container(ref) for ref in _references(message.headers)])
    return [c for c in everything if c.parent is None]


def _link_references(own: _Container[M], chain: list[_Container[M]]) -> None:
    for parent, child in itertools.pairwise(chain):  # (B): only where none is known
        if child.parent is None and not child.is_ancestor_of(parent):
            child.link_under(parent)
    own.unlink()  # (C): the message's own References decide its parent
    if chain and chain[-1] is not own and not own.is_ancestor_of(chain[-1]):
        own.link_under(chain[-1])


def _preorder(roots: list[_Container[M]]) -> list[_Container[M]]:
    """Every container below ``roots``, each before its children (no recursion: a thread may be
    thousands of messages deep)."""
    out: list[_Container[M]] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def _pruned(siblings: list[_Container[M]], at_root: bool, parent: _Container[M] | None) -> list[_Container[M]]:
    out: list[_Container[M]] = []
    for node in siblings:
        if node.message is not None or (at_root and len(node.children) > 1):
            out.append(node)
        else:  # a dummy: gone, its (already pruned) children in its place
            out.extend(node.children)
    for node in out:
        node.parent = parent
    return out


def _prune(roots: list[_Container[M]]) -> list[_Container[M]]:
    """RFC 5256 4 (4): dummies without children go; a dummy's children take its place, except
    a dummy at the root with several children. Children are pruned before their parent."""
    for node in reversed(_preorder(roots)):
        node.children = _pruned(node.children, False, node)
    return _pruned(roots, True, None)


def _subject(container: _Container[M]) -> tuple[str, bool]:
    node = container if container.message is not None else container.children[0]
    assert node.message is not None
    base, reply = base_subject_and_reply(subject_of(node.message.headers))
    return casemap(base), reply


def _merge_subjects(roots: list[_Container[M]]) -> list[_Container[M]]:
    """RFC 5256 4 (6): root threads with the same base subject are gathered."""
    table: dict[str, _Container[M]] = {}
    subjects = {id(root): _subject(root) for root in roots}
    for root in roots:  # (A), (B)
        subject, reply = subjects[id(root)]
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (root.message is None and held.message is not None) or (
                held.message is not None and subjects[id(held)][1] and not reply):
            table[subject] = root
    merged = list(roots)
    for root in roots:  # (C)
        subject, reply = subjects[id(root)]
        held = table.get(subject) if subject else None
        if held is not None and held is not root:
            _merge(held, root, reply, subjects.get(id(held), ("", False))[1], table, subject, merged)
    return [root for root in merged if root.parent is None and (root.message is not None or root.children)]


def _merge(held: _Container[M], root: _Container[M], reply: bool, held_reply: bool,
           table: dict[str, _Container[M]], subject: str, merged: list[_Container[M]]) -> None:
    if held.message is None and root.message is None:
        for child in list(root.children):
            child.link_under(held)
    elif held.message is None:
        root.link_under(held)
    elif root.message is None:
        held.link_under(root)
        table[subject] = root
        merged[merged.index(held)] = root
    elif reply and not held_reply:
        root.link_under(held)
    else:  # both replies or neither: siblings under a new dummy in the held one's place
        dummy: _Container[M] = _Container()
        merged[merged.index(held)] = dummy
        held.link_under(dummy)
        root.link_under(dummy)
        table[subject] = dummy


def _nodes(roots: list[_Container[M]]) -> list[ThreadNode[M]]:
    made: dict[int, ThreadNode[M]] = {}
    for node in reversed(_preorder(roots)):
        made[id(node)] = ThreadNode(node.message, [made[id(child)] for child in node.children])
    return [made[id(root)] for root in roots]


def thread_references(messages: Sequence[M]) -> list[ThreadNode[M]]:
    """THREAD=REFERENCES (RFC 5256 4)."""
    roots = _prune(_build(messages))  # (2), (3), (4)
    _sort_tree(roots)  # (5)
    roots = _merge_subjects(roots)  # (6)
    _sort_tree(roots)  # (7)
    return _nodes(roots)


def thread_orderedsubject(messages: Sequence[M]) -> list[ThreadNode[M]]:
    """THREAD=ORDEREDSUBJECT (RFC 5256 4): by base subject then sent date; each subject one
    thread whose first message is the parent of all the others; threads by their first date."""
    keyed = [(casemap(base_subject_and_reply(subject_of(m.headers))[0]), sent_date(m), order, m)
             for order, m in enumerate(messages)]
    keyed.sort(key=lambda item: (item[0], item[1], item[2]))
    threads: list[tuple[float, int, ThreadNode[M]]] = []
    for index, (subject, date, order, message) in enumerate(keyed):
        if index and keyed[index - 1][0] == subject:
            threads[-1][2].children.append(ThreadNode(message))
        else:
            threads.append((date, order, ThreadNode(message)))
    threads.sort(key=lambda item: (item[0], item[1]))
    return [node for _, _, node in threads]


def thread_messages(algorithm: str, messages: Sequence[M]) -> list[ThreadNode[M]]:
    """The threads of ``messages`` (in sequence order) by ``algorithm`` (upper-case)."""
    if algorithm.upper() == "REFERENCES":
        return thread_references(messages)
    if algorithm.upper() == "ORDEREDSUBJECT":
        return thread_orderedsubject(messages)
    raise ValueError(f"unknown THREAD algorithm {algorithm[:40]!r}")


def _members(top: ThreadNode[M], number: Callable[[M], int]) -> str:
    """thread-members (RFC 5256 5): a chain of only children as ``a b c``, branches as
    ``(b ...)(c ...)``; a dummy shows only its children. Without recursion."""
    out: list[str] = []
    stack: list[ThreadNode[M] | str] = [top]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, pieces = item, []
        while True:
            if node.message is not None:
                pieces.append(str(number(node.message)))
            if len(node.children) != 1:
                break
            node = node.children[0]
        out.append(" ".join(pieces) + (" " if pieces and node.children else ""))
        for child in reversed(node.children):
            stack += [")", child, "("]
    return "".join(out)


def thread_list(nodes: Sequence[ThreadNode[M]], number: Callable[[M], int]) -> str:
    """The THREAD response's thread-list: ``(1 2)(3 (4)(5))`` (``number``: seq or UID)."""
    return "".join(f"({_members(node, number)})" for node in nodes)
