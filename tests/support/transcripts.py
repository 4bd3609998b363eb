"""The transcript file format shared by the SMTP, IMAP and POP3 transcript tests: one step a line,
``C: text`` (client sends) or ``S: pattern`` (server answers), an optional ``LISTENER: kind`` line,
blank lines and ``#`` comments ignored."""

from __future__ import annotations

from pathlib import Path


def transcript_steps(path: Path, default_listener: str) -> tuple[str, list[tuple[str, str]]]:
    """The listener kind the transcript talks to and its (kind, text) steps in order."""
    listener, steps = default_listener, []
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        kind, _, text = raw.partition(":")
        text = text[1:] if text.startswith(" ") else text
        if kind == "LISTENER":
            listener = text.strip()
        else:
            steps.append((kind, text))
    return listener, steps
