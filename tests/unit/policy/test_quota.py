"""The pure quota decision: usage + limits + incoming size → accept, 452 4.2.2 or 552 5.2.2."""

from __future__ import annotations

import pytest

from hardmail.policy.quota import Usage, over_quota_reason, quota_verdict


def test_unlimited_accepts_anything() -> None:
    verdict = quota_verdict(Usage(10**12, None, 10**9, None), 10**9, "defer")
    assert verdict.accept


def test_zero_limit_means_unlimited() -> None:
    assert quota_verdict(Usage(500, 0, 5, 0), 100, "bounce").accept


@pytest.mark.parametrize(("used", "size", "fits"), [(0, 1000, True), (900, 100, True), (900, 101, False),
                                                     (1000, 0, False), (1200, 0, False)])
def test_storage_limit_counts_the_incoming_size(used: int, size: int, fits: bool) -> None:
    verdict = quota_verdict(Usage(used, 1000, 1, None), size, "defer")
    assert verdict.accept is fits
    if not fits:
        assert (verdict.reply.code, verdict.reply.enhanced) == (452, "4.2.2")
        assert "over quota" in verdict.reason


def test_message_count_limit() -> None:
    assert quota_verdict(Usage(0, None, 9, 10), 1, "defer").accept
    refused = quota_verdict(Usage(0, None, 10, 10), 1, "bounce")
    assert not refused.accept
    assert (refused.reply.code, refused.reply.enhanced) == (552, "5.2.2")
    assert "message count" in refused.reason


def test_bounce_setting_gives_a_permanent_reply() -> None:
    verdict = quota_verdict(Usage(1000, 1000, 0, None), 0, "bounce")
    assert (verdict.reply.code, verdict.reply.enhanced) == (552, "5.2.2")
    assert verdict.reply.lines[0] == "Mailbox full"


def test_reasons_tell_full_from_too_big() -> None:
    assert "storage full" in (over_quota_reason(Usage(1000, 1000, 0, None), 0) or "")
    assert "does not fit" in (over_quota_reason(Usage(10, 1000, 0, None), 5000) or "")
    assert over_quota_reason(Usage(10, 1000, 0, None), -5) is None
