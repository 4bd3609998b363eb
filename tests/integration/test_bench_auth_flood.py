"""Smoke run of bench/auth_flood.py at a tiny size: it runs and reports every field (no timings checked)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "auth_flood.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("auth_flood", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_auth_flood_runs_and_reports() -> None:
    bench = _load()
    result = bench.run_bench(bench.Plan(sources=2, rate=20.0, duration=1.0, legit_interval=0.2, cheap_hash=True))
    assert result["sources"] == 2 and result["attempts"] >= 2
    assert set(result["attacker_replies"]) <= {"535", "421"}
    assert result["legit_logins"] >= 1 and result["legit_failures"] == {}
    for key in ("hashes_during_attack", "hashes_per_banned_source", "legit_auth_p50_ms", "legit_auth_p99_ms"):
        assert key in result
