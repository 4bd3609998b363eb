"""Ask Dovecot what it answers for the MIME corpus and store it in expected_dovecot.json, so that
the tests compare hardmail with Dovecot without needing Dovecot.

Run: .venv/bin/python tests/data/mime/make_expected.py  (needs /usr/lib/dovecot/imap; touches
no system file: a private config, base_dir and Maildir under a temporary directory; Dovecot runs
in pre-authenticated mode on stdin/stdout, as the user nobody when run as root).

For each corpus file: BODYSTRUCTURE, BODY, ENVELOPE, RFC822.SIZE, then every section of every
part (BODY[p], [p.MIME], [p.HEADER]/[p.TEXT] for message parts, BINARY[p], BINARY.SIZE[p]) and a
few partial and missing ones, each in its own command (a failing BINARY ends only its command).
For the corpus as one mailbox and for threads/: SEARCH, SORT and THREAD answers. For
address_cases.txt: the ENVELOPE of ``To: <case>``. For mutants/ (broken copies of the corpus) and
generated/ (random MIME structures), which this script writes, the same every run: what it asks
of each corpus file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
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
_TIMING = re.compile(rb" \([0-9.]+ \+ [0-9.]+(?: \+ [0-9.]+)? secs\)\.")
NOBODY = 65534 if os.getuid() == 0 else os.getuid()  # Dovecot refuses to give mail to root
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
    'BODY "MsoNormal"', 'BODY "Heidi"', 'BODY "Anna"', 'TEXT "inner-alt-2"', 'BODY "Teilnehmerliste"',
    'BODY "Content-Type"', 'TEXT "iVBORw0KGgo"', 'BODY "begin 644"', 'BODY "original text"', 'BODY "İletiyi"',
    'BODY "Invoice 2024-118"', 'BODY "VCALENDAR"', 'BODY "user unknown"', 'BODY "nobody@example.net"',
    'BODY "edge & case"', 'BODY "&amp;"', 'BODY "sent today"', 'BODY "fixes the crash"', 'TEXT "RFC822"',
    'BODY "Job finished — 3"', 'BODY "B\\u00fccher"', 'BODY "hello from Bob"', 'TEXT "=?utf-8?"',
    'TEXT "Teilnehmerliste"', 'TEXT "Teilnehmerliste Übersicht"', 'TEXT "winmail.dat"', 'TEXT "%C3%9Cberweisung"',
    'TEXT "Überweisung"', 'TEXT "Photos de l\u2019été"', 'HEADER "Content-Type" "multipart"',
    'HEADER "X-MS-Has-Attach" ""',
    'TEXT "Grüße"', 'BODY "Anna Berg"', 'TEXT "Anna Berg"', 'FROM "anna.berg@example.org"', 'TO "bob martin"',
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
            if line.startswith(f"t{index} ".encode()):
                answer += _TIMING.sub(b".", line)  # the time taken would change every run
                break
            answer += line
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
    for dirpath, _dirs, names in os.walk(root) if os.getuid() == 0 else ():
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


MUTANTS = 200


def _mutated(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1 to 3 of: a line deleted, a line repeated elsewhere, a line cut short, a
    lone CR line put in, the rest of the message cut off."""
    lines = data.split(b"\n")
    for _ in range(rng.randrange(1, 4)):
        if not lines:
            break
        operation, at = rng.randrange(5), rng.randrange(len(lines))
        if operation == 0:
            del lines[at]
        elif operation == 1:
            lines.insert(at, lines[rng.randrange(len(lines))])
        elif operation == 2:
            lines[at] = lines[at][: rng.randrange(len(lines[at]) + 1)]
        elif operation == 3:
            lines.insert(at, b"\r")
        else:
            lines = lines[:at]
    return b"\n".join(lines)


def mutants(corpus: list[Path]) -> dict[str, Any]:
    """Write mutants/ (broken copies of the corpus, the same every run) and Dovecot's answers."""
    folder = HERE / "mutants"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = random.Random(7)
    out = {}
    for index in range(MUTANTS):
        source = rng.choice(corpus)
        path = folder / f"m{index:03}_{source.stem}.eml"
        path.write_bytes(_mutated(source.read_bytes(), rng))
        try:
            out[path.name] = one_message(path)
        except AssertionError:  # Dovecot gave up on it (it ended the session): not kept
            path.unlink()
    return out


RANDOM_THREADS = 150
_SUBJECTS = ["Budget 2025", "Lunch?", "Release notes", "=?utf-8?q?R=C3=A9union?=", "server down", "", "Urlaub",
             "[list] weekly", "Invoice 42", "hello", "Re: ", "Pläne"]
_NAMES = ["Alice <alice@example.com>", "bob@example.com", "=?utf-8?q?=C3=89milie?= <emilie@example.fr>",
          '"Zed, Zoe" <zoe@example.com>', "carol@example.org (Carol)", "Dave <dave@example.net>", ""]


def _random_message(index: int, rng: random.Random) -> bytes:
    """A small message of a made-up busy folder: replies, forwards, lost parents, duplicate and
    missing ids, loops, bad and missing dates, encoded subjects."""
    subject = rng.choice(_SUBJECTS)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        subject = rng.choice(["Re: ", "RE: ", "Fwd: ", "Fw: ", "[list] ", "Re[2]: "]) + subject
    if rng.random() < 0.1:
        subject += rng.choice([" (fwd)", "  ", " (FWD) "])
    if rng.random() < 0.05:
        subject = f"[fwd: {subject}]"
    lines = [f"From: {rng.choice(_NAMES)}", f"To: {rng.choice(_NAMES)}", f"Subject: {subject}"]
    roll = rng.random()
    if roll < 0.9:
        lines.append(f"Date: {1 + rng.randrange(28)} Feb 2024 {rng.randrange(24):02}:{rng.randrange(60):02}:00 "
                     f"{rng.choice(['+0000', '+0100', '-0800'])}")
    elif roll < 0.95:
        lines.append("Date: not a date")
    if rng.random() < 0.95:
        number = index if rng.random() > 0.04 or index == 0 else rng.randrange(index)
        lines.append(f"Message-ID: <r{number}@example.com>")
    references = [f"<r{rng.randrange(index + 5)}@example.com>" for _ in range(rng.choice([0, 0, 1, 2, 3, 5]))]
    if references and rng.random() < 0.3:
        lines.append("In-Reply-To: " + references[-1])
    elif references:
        lines.append("References: " + " ".join(references))
    return ("\r\n".join(lines) + "\r\n\r\n" + "x" * rng.randrange(200) + "\r\n").encode()


def random_threads() -> list[Path]:
    folder = HERE / "threads_random"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = random.Random(11)
    paths = []
    for index in range(RANDOM_THREADS):
        path = folder / f"r{index:03}.eml"
        path.write_bytes(_random_message(index, rng))
        paths.append(path)
    return paths


def stdlib_messages() -> dict[str, Any]:
    """stdlib/ (CPython's email test messages): as the corpus files, keyed ``stdlib/<name>``."""
    out = {}
    for path in sorted((HERE / "stdlib").glob("msg_*.txt")):
        with contextlib.suppress(AssertionError):  # Dovecot ended the session on it (msg_39)
            out[f"stdlib/{path.name}"] = one_message(path)
    return out


GENERATED = 150
_BOUNDARIES = ["b", "=_x", "----=_NextPart_{n}", "a b", "Apple-Mail=_{n}"]
_LEAF_TYPES = ["text/plain", "text/html; charset=utf-8", "application/octet-stream; name=x.bin", "image/png", None,
               "TEXT/Plain; Charset=ISO-8859-1"]
_LEAF_BODIES = ["hello\r\n", "aGVsbG8gd29ybGQ=\r\n", "caf=C3=A9 =\r\nau lait\r\n", "", "line1\r\nline2", "\r\n\r\n"]


def _generated_multipart(depth: int, rng: random.Random) -> str:
    boundary = rng.choice(_BOUNDARIES).format(n=rng.randrange(99)) + f"{depth}{rng.randrange(3)}"
    subtype = rng.choice(["mixed", "alternative", "related", "digest", "signed"])
    children = [_generated_part(depth + 1, rng) for _ in range(rng.randrange(0, 4))]
    body = rng.choice(["", "preamble\r\n"])
    body += "".join(f"--{boundary}{rng.choice(['', ' ', '  '])}\r\n{child}\r\n" for child in children)
    if rng.random() < 0.85:
        body += f"--{boundary}--\r\n" + rng.choice(["", "epilogue\r\n", "\r\n"])
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n' + body


def _generated_part(depth: int, rng: random.Random) -> str:
    """A random MIME part: multiparts with odd boundaries and padding, missing close delimiters,
    messages in messages, leaves with and without headers and encodings."""
    roll = rng.random()
    if depth < 4 and roll < 0.35:
        return _generated_multipart(depth, rng)
    if depth < 4 and roll < 0.45:
        inner = f"Subject: inner {depth}\r\nFrom: a{depth}@x\r\n" + _generated_part(depth + 1, rng)
        return "Content-Type: message/rfc822\r\n\r\n" + inner
    header = []
    kind = rng.choice(_LEAF_TYPES)
    if kind:
        header.append("Content-Type: " + kind)
    encoding = rng.choice([None, "7bit", "base64", "quoted-printable", "8bit"])
    if encoding:
        header.append("Content-Transfer-Encoding: " + encoding)
    if rng.random() < 0.2:
        header.append(f'Content-Disposition: attachment; filename="f{rng.randrange(9)}.txt"')
    if rng.random() < 0.1:
        header.append("Content-Language: en")
    body = rng.choice(_LEAF_BODIES)
    if not header and rng.random() < 0.5:
        return "\r\n" + body
    return "\r\n".join(header) + "\r\n\r\n" + body


def generated() -> dict[str, Any]:
    """Write generated/ (random MIME structures, the same every run) and Dovecot's answers."""
    folder = HERE / "generated"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = random.Random(3)
    out = {}
    for index in range(GENERATED):
        path = folder / f"g{index:03}.eml"
        head = f"From: g{index}@x\r\nSubject: generated {index}\r\nMIME-Version: 1.0\r\n"
        path.write_bytes((head + _generated_part(0, rng)).encode())
        try:
            out[path.name] = one_message(path)
        except AssertionError:  # Dovecot ended the session on it: not kept
            path.unlink()
    return out


def main() -> None:
    corpus = sorted(HERE.glob("*.eml"))
    threads = sorted((HERE / "threads").glob("*.eml"))
    out: dict[str, Any] = {
        "dovecot": subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.strip(),
        "messages": {path.name: one_message(path) for path in corpus} | stdlib_messages(),
        "corpus_mailbox": mailbox(corpus, SEARCHES),
        "threads_mailbox": mailbox(threads, ['SUBJECT "réunion"', 'FROM "émilie"', 'TO "andré"']),
        "address_cases": address_cases(),
        "threads_random_mailbox": mailbox(random_threads(), ['SUBJECT "réunion"', 'FROM "zoe"']),
        "stdlib_mailbox": mailbox(sorted((HERE / "stdlib").glob("msg_*.txt")), [
            'BODY "the"', 'TEXT "python"', 'SUBJECT "test"', 'FROM "barry"', 'BODY "hello"', 'TO "python"',
            'BODY "boundary"', 'TEXT "dingus"', 'CC "foo"', 'BODY "Bug"']),
        "mutants": mutants(corpus),
        "generated": generated(),
    }
    (HERE / "expected_dovecot.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
