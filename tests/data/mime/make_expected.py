"""Ask Dovecot what it answers for the MIME corpus and store it in expected_dovecot.json, so that
the tests compare hardmail with Dovecot without needing Dovecot.

Run: .venv/bin/python tests/data/mime/make_expected.py  (needs /usr/lib/dovecot/imap; touches
no system file: a private config, base_dir and Maildir under a temporary directory; Dovecot runs
in pre-authenticated mode on stdin/stdout, as the user nobody).

For each corpus file: BODYSTRUCTURE, BODY, ENVELOPE, RFC822.SIZE, then every section of every
part (BODY[p], [p.MIME], [p.HEADER]/[p.TEXT] for message parts, BINARY[p], BINARY.SIZE[p]) and a
few partial and missing ones, each in its own command (a failing BINARY ends only its command).
For the corpus as one mailbox and for threads/: SEARCH, SORT and THREAD answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for data.mime.imap_text
from data.mime.imap_text import parse_fetch  # noqa: E402

IMAP = "/usr/lib/dovecot/imap"
NOBODY = 65534
BASE_TIME = 1_700_000_000  # INTERNALDATE of the first file; each next one an hour later

CONFIG = """base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log
mail_location = maildir:{root}/mail
mail_uid = {uid}
mail_gid = {uid}
first_valid_uid = 0
ssl = no
protocols =
passdb {{
  driver = static
  args = password=x
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/home
}}
"""

SEARCHES = [
    'SUBJECT "été"', 'SUBJECT "Übergabe"', 'SUBJECT "für"', 'SUBJECT "bientôt"', 'FROM "Jörg"',
    'TO "Jörg"', 'FROM "サイト"', 'CC "François"', 'BODY "Grüße"', 'BODY "bibliothèque"',
    'TEXT "bientôt"', 'BODY "plage"', 'BODY "budget sheet"', 'TEXT "permission denied"',
    'BODY "deep"', 'BODY "Straße"', 'BODY "こんにちは"', 'SUBJECT "rapport"', 'BODY "tout va bien"',
    'HEADER "Thread-Index" ""', 'TEXT "Rechnung"', 'BODY "Rechnung"', 'BODY "color"',
    'TEXT "Thomas.Keller"', 'SUBJECT "sale"', 'BODY "café"', 'BODY "caf"', 'TEXT "quarterly"',
]
SORTS = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO",
         "REVERSE DATE", "REVERSE SUBJECT DATE", "FROM REVERSE SIZE"]


def run_session(root: Path, commands: list[str]) -> list[bytes]:
    """Each command's response (its untagged lines and its tagged line), one command at a time:
    Dovecot stops writing when its input ends, so the next command is sent only after the answer."""
    env = {"USER": "u", "HOME": str(root / "home"), "MAIL": f"maildir:{root}/mail", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([IMAP, "-c", str(root / "dovecot.conf")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env)
    assert process.stdin is not None and process.stdout is not None
    process.stdout.readline()  # the PREAUTH greeting
    answers = []
    for index, command in enumerate(commands):
        process.stdin.write(f"t{index} {command}\r\n".encode())
        process.stdin.flush()
        answer = bytearray()
        while True:
            line = process.stdout.readline()
            assert line, "dovecot ended early"
            answer += line
            if line.startswith(f"t{index} ".encode()):
                break
        answers.append(bytes(answer))
    process.stdin.write(b"x LOGOUT\r\n")
    process.stdin.close()
    process.wait(timeout=60)
    return answers


def make_root(files: list[Path]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="hardmail-dovecot-"))
    for name in ("run", "state", "home", "mail/cur", "mail/new", "mail/tmp"):
        (root / name).mkdir(parents=True)
    (root / "dovecot.conf").write_text(CONFIG.format(root=root, uid=NOBODY))
    for index, path in enumerate(files):
        target = root / "mail" / "cur" / f"{BASE_TIME + index * 3600}.M{index}P1.corpus:2,"
        shutil.copyfile(path, target)
        os.utime(target, (BASE_TIME + index * 3600, BASE_TIME + index * 3600))
    for dirpath, _dirs, names in os.walk(root):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in names:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
    return root


def _is_multipart(body: list[Any]) -> bool:
    return isinstance(body[0], list)


def part_paths(body: list[Any], prefix: str = "") -> list[tuple[str, bool, bool]]:
    """(path, is a message/rfc822 part, is a multipart) of every part below ``body``."""
    out: list[tuple[str, bool, bool]] = []
    children = [body]
    if _is_multipart(body):
        children = []
        for child in body:
            if not isinstance(child, list):
                break
            children.append(child)
    for number, child in enumerate(children, 1):
        path = f"{prefix}{number}"
        is_message = not _is_multipart(child) and child[0].lower() == b"message" and child[1].lower() in (
            b"rfc822", b"global") and len(child) > 8 and isinstance(child[8], list)
        out.append((path, is_message, _is_multipart(child)))
        if _is_multipart(child):
            out.extend(part_paths(child, path + "."))
        elif is_message:
            out.extend(part_paths(child[8], path + "."))
    return out


def section_items(body: list[Any]) -> list[str]:
    items = ["BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[]<0.30>",
             "BODY.PEEK[TEXT]<10.25>", "BODY.PEEK[HEADER]<5000.10>", "BODY.PEEK[99]", "BODY.PEEK[1.99]",
             "BODY.PEEK[1.1.1.1.1]", "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT CONTENT-TYPE)]",
             "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED CONTENT-TYPE FROM)]", "BODY.PEEK[HEADER.FIELDS (X-NONE)]",
             "BINARY.PEEK[]", "BINARY.SIZE[]"]
    for path, is_message, _multipart in part_paths(body):
        items += [f"BODY.PEEK[{path}]", f"BODY.PEEK[{path}.MIME]", f"BINARY.PEEK[{path}]",
                  f"BINARY.SIZE[{path}]", f"BODY.PEEK[{path}]<3.7>", f"BINARY.PEEK[{path}]<2.9>"]
        if is_message:
            items += [f"BODY.PEEK[{path}.HEADER]", f"BODY.PEEK[{path}.TEXT]",
                      f"BODY.PEEK[{path}.HEADER.FIELDS (SUBJECT FROM)]"]
    return items


def one_message(path: Path) -> dict[str, Any]:
    root = make_root([path])
    try:
        first = run_session(root, ["SELECT INBOX", "FETCH 1 (BODYSTRUCTURE BODY ENVELOPE RFC822.SIZE)"])[1]
        fetched = parse_fetch(first)[1]
        items = section_items(fetched["BODYSTRUCTURE"])
        commands = ["SELECT INBOX", *(f"FETCH 1 ({item})" for item in items)]
        answers = run_session(root, commands)[1:]
        sections = {item: answer.decode("latin-1") for item, answer in zip(items, answers, strict=True)}
        return {"fetch": first.decode("latin-1"), "sections": sections}
    finally:
        shutil.rmtree(root)


def mailbox(files: list[Path], searches: list[str]) -> dict[str, Any]:
    root = make_root(files)
    try:
        commands = ["SELECT INBOX", "FETCH 1:* (INTERNALDATE RFC822.SIZE)"]
        commands += [f"SEARCH CHARSET UTF-8 {key}" for key in searches]
        commands += [f"SORT ({key}) UTF-8 ALL" for key in SORTS]
        commands += ["THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"]
        answers = run_session(root, commands)
        return {
            "files": [path.name for path in files],
            "internaldate_base": BASE_TIME,
            "answers": {command: answer.decode("latin-1") for command, answer in zip(commands[1:], answers[1:],
                                                                                      strict=True)},
        }
    finally:
        shutil.rmtree(root)


def address_cases() -> dict[str, str]:
    """Dovecot's ENVELOPE for ``To: <case>`` of each line of address_cases.txt (a mailbox of one
    small message per case, in order)."""
    cases = [line for line in (HERE / "address_cases.txt").read_text("utf-8").split("\n") if line]
    folder = Path(tempfile.mkdtemp(prefix="hardmail-cases-"))
    try:
        files = []
        for index, case in enumerate(cases):
            path = folder / f"{index:04}.eml"
            path.write_bytes(b"To: " + case.encode() + b"\r\nSubject: x\r\n\r\nbody\r\n")
            files.append(path)
        root = make_root(files)
        try:
            answer = run_session(root, ["SELECT INBOX", "FETCH 1:* (ENVELOPE)"])[1]
        finally:
            shutil.rmtree(root)
    finally:
        shutil.rmtree(folder)
    lines = answer.split(b"\r\n* ")
    assert len(lines) == len(cases), "one FETCH line per case"
    return {case: line.decode("latin-1") for case, line in zip(cases, lines, strict=True)}


def main() -> None:
    corpus = sorted(HERE.glob("*.eml"))
    threads = sorted((HERE / "threads").glob("*.eml"))
    out: dict[str, Any] = {
        "dovecot": subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.strip(),
        "messages": {path.name: one_message(path) for path in corpus},
        "corpus_mailbox": mailbox(corpus, SEARCHES),
        "threads_mailbox": mailbox(threads, ['SUBJECT "réunion"', 'FROM "émilie"', 'TO "andré"']),
        "address_cases": address_cases(),
    }
    (HERE / "expected_dovecot.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
