"""The selected-mailbox view: message numbers, untagged updates, RFC 9051 7.5.1 deferral of EXPUNGE,
QRESYNC VANISHED and CONDSTORE MODSEQ (RFC 7162)."""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.imap.selected import SelectedView, expunge_allowed, qresync_vanished
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.searchkeys import AllKey
from hardmail.proto.imap.sequence import SequenceSet


@dataclass(frozen=True)
class Rec:
    uid: int
    modseq: int = 1
    flags: frozenset[str] = frozenset()


def recs(*uids: int) -> list[Rec]:
    return [Rec(uid) for uid in uids]


def test_map_between_numbers_and_uids() -> None:
    view = SelectedView(recs(30, 10, 20))
    assert view.exists == 3 and list(view.uids) == [10, 20, 30]
    assert view.uid_of(1) == 10 and view.seq_of(30) == 3 and view.seq_of(15) is None
    assert view.max_uid == 30 and SelectedView([]).max_uid == 0


def test_new_messages_give_exists_and_recent_for_rev1() -> None:
    view = SelectedView(recs(1, 2))
    assert view.apply_snapshot(recs(1, 2, 3, 4), recent=[3, 4]) == [b"* 4 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert view.apply_snapshot(recs(1, 2, 3, 4)) == []
    rev2 = SelectedView(recs(1), rev1=False)
    assert rev2.apply_snapshot(recs(1, 2)) == [b"* 2 EXISTS\r\n"]


def test_expunge_numbers_shift_as_in_rfc_9051_7_5_1() -> None:
    view = SelectedView(recs(*range(1, 12)))
    out = view.apply_snapshot(recs(1, 2, 5, 6, 8, 9, 10))  # messages 3, 4, 7, 11 expunged
    assert out == [b"* 3 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n", b"* 5 EXPUNGE\r\n", b"* 8 EXPUNGE\r\n"]
    assert list(view.uids) == [1, 2, 5, 6, 8, 9, 10]


def test_expunge_is_deferred_during_fetch_store_search_and_sent_later() -> None:
    view = SelectedView(recs(1, 2, 3))
    assert view.apply_snapshot(recs(1, 3), allow_expunge=False) == []
    assert view.exists == 3 and view.seq_of(3) == 3 and view.is_expunged(2)
    # a message arriving meanwhile is announced with the old numbers still in place
    assert view.apply_snapshot(recs(1, 3, 4), allow_expunge=False, recent=[4]) == [
        b"* 4 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert view.seq_of(4) == 4
    out = view.apply_snapshot(recs(1, 3, 4))
    assert out == [b"* 2 EXPUNGE\r\n"] and view.exists == 3 and not view.is_expunged(2) and view.seq_of(4) == 3


def test_which_commands_allow_expunge() -> None:
    seq = SequenceSet.of(1)
    assert not expunge_allowed(c.Fetch("a", False, seq, (c.FetchItem("FLAGS"),)))
    assert not expunge_allowed(c.Store("a", False, seq, "add", False, ("\\Seen",)))
    assert not expunge_allowed(c.Search("a", False, AllKey()))
    assert expunge_allowed(c.Fetch("a", True, seq, (c.FetchItem("FLAGS"),)))
    assert expunge_allowed(c.Store("a", True, seq, "add", False, ()))
    assert expunge_allowed(c.Search("a", True, AllKey()))
    assert expunge_allowed(c.Noop("a")) and expunge_allowed(None) and expunge_allowed(c.Copy("a", False, seq, "x"))


def test_flag_changes_from_elsewhere_become_fetch_responses() -> None:
    view = SelectedView([Rec(5, 1), Rec(6, 1)])
    out = view.apply_snapshot([Rec(5, 2, frozenset({"\\Seen"})), Rec(6, 1)])
    assert out == [b"* 1 FETCH (FLAGS (\\Seen))\r\n"]
    assert view.apply_snapshot([Rec(5, 3, frozenset({"\\Seen"})), Rec(6, 1)]) == []  # modseq only: not CONDSTORE


def test_condstore_adds_modseq_and_reports_modseq_only_changes() -> None:
    view = SelectedView([Rec(5, 1), Rec(6, 1)], condstore=True)
    assert view.apply_snapshot([Rec(5, 7, frozenset({"$Junk"})), Rec(6, 1)]) == [
        b"* 1 FETCH (FLAGS ($Junk) MODSEQ (7))\r\n"]
    assert view.apply_snapshot([Rec(5, 8, frozenset({"$Junk"})), Rec(6, 1)]) == [
        b"* 1 FETCH (FLAGS ($Junk) MODSEQ (8))\r\n"]


def test_qresync_sends_vanished_and_uid_in_fetch() -> None:
    view = SelectedView([Rec(u) for u in (1, 2, 3, 4, 9)], qresync=True)
    assert view.condstore
    out = view.apply_changes([Rec(4, 5, frozenset({"\\Flagged"}))], vanished=[2, 3, 77])
    assert out == [b"* VANISHED 2:3\r\n", b"* 2 FETCH (UID 4 FLAGS (\\Flagged) MODSEQ (5))\r\n"]
    assert list(view.uids) == [1, 4, 9]


def test_qresync_vanished_also_deferred() -> None:
    view = SelectedView(recs(1, 2), qresync=True)
    assert view.apply_changes([], [1], allow_expunge=False) == []
    assert view.flush_expunges() == [b"* VANISHED 1\r\n"]


def test_changes_with_new_messages() -> None:
    view = SelectedView(recs(1, 2), rev1=False)
    assert view.apply_changes([Rec(3, 4), Rec(2, 4, frozenset({"\\Deleted"}))], []) == [
        b"* 2 FETCH (FLAGS (\\Deleted))\r\n", b"* 3 EXISTS\r\n"]


def test_own_store_is_not_reported_twice() -> None:
    view = SelectedView(recs(1))
    view.note(Rec(1, 2, frozenset({"\\Seen"})))
    assert view.apply_snapshot([Rec(1, 2, frozenset({"\\Seen"}))]) == []
    assert view.known(1) is not None and view.known(1).flags == {"\\Seen"}  # type: ignore[union-attr]


def test_own_expunge_is_announced_at_once() -> None:
    view = SelectedView(recs(1, 2, 3))
    assert view.expunged_by_self([1, 3]) == [b"* 1 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert view.apply_snapshot(recs(2)) == []


def test_recent_flag_in_rev1_fetch() -> None:
    view = SelectedView(recs(1), recent=[1])
    assert view.apply_snapshot([Rec(1, 2, frozenset({"\\Seen"}))]) == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"]


def test_qresync_select_vanished_earlier() -> None:
    assert qresync_vanished([5, 3, 9], None, 10) == [3, 5, 9]
    assert qresync_vanished([5, 3, 9], SequenceSet(((1, 4),)), 10) == [3]
    assert qresync_vanished([], SequenceSet(((1, 4),)), 10) == []


@dataclass(frozen=True)
class Snapshot:
    messages: list[Rec]
    recent_uids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Changes:
    highestmodseq: int
    changed: list[Rec]
    vanished: list[int]


def test_apply_takes_snapshots_and_changes() -> None:
    view = SelectedView(recs(1, 2))
    assert view.apply(Snapshot(recs(1, 2, 3), frozenset({3}))) == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert view.apply(Changes(9, [], [1]), allow_expunge=False) == []
    assert view.apply(Changes(9, [], [])) == [b"* 1 EXPUNGE\r\n"]


def test_search_and_selected_modules_stay_pure() -> None:
    """Like tests/unit/test_layering.py for proto/: the IMAP logic modules import no I/O."""
    import ast
    from pathlib import Path

    import hardmail.imap.search as search_module
    import hardmail.imap.selected as selected_module

    forbidden = ("asyncio", "socket", "ssl", "selectors", "hardmail.server", "hardmail.store", "sqlalchemy",
                 "hardmail.mailbox", "hardmail.delivery")
    for module in (search_module, selected_module):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not [n for n in names if any(n == bad or n.startswith(bad + ".") for bad in forbidden)], module


def test_highest_known_modseq() -> None:
    assert SelectedView([Rec(1, 5), Rec(2, 9)]).highest_known_modseq() == 9
    assert SelectedView([]).highest_known_modseq() == 0


def test_a_message_that_came_and_went_between_updates_is_never_shown() -> None:
    view = SelectedView(recs(1), rev1=False)
    assert view.apply_changes([Rec(2), Rec(3)], vanished=[2]) == [b"* 2 EXISTS\r\n"]
    assert list(view.uids) == [1, 3]
