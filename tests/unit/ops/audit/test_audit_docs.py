"""docs/audit.md lists every check of the catalog by its id."""

from __future__ import annotations

import re
from pathlib import Path

from hardmail.ops.audit.catalog import all_checks

DOC = Path(__file__).resolve().parents[4] / "docs" / "audit.md"


def test_every_check_id_is_in_docs_audit_md() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [check.id for check in all_checks() if not _names(text, check.id)]
    assert missing == [], f"document these checks in docs/audit.md, each by its id: {missing}"


def _names(text: str, check_id: str) -> bool:
    """The id as a whole word: not part of a longer id (``relay.open`` is not ``relay.open.forms``)."""
    return re.search(rf"(?<![\w.]){re.escape(check_id)}(?!\w|\.\w)", text) is not None


def test_the_cli_section_is_written() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- section: cli" not in text
    assert _names("see `relay.open`.", "relay.open") and not _names("relay.open.forms", "relay.open")
    for needle in ("--i-own-this-server", "hardmail audit history", "audit.interval_hours", "audit-probe-"):
        assert needle in text
