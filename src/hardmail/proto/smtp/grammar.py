"""SMTP command-line grammar: verbs, paths and ESMTP parameters (RFC 5321 4.1, RFC 1870, RFC 3461,
RFC 4954, RFC 6152, RFC 6531). Pure functions from one decoded command line to values or errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hardmail.core.address import Address, AddressError, parse_mailbox
from hardmail.core.replies import (
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    PARAM_NOT_IMPLEMENTED,
    SMTPUTF8_REQUIRED,
    SYNTAX_ERROR,
    Reply,
)
from hardmail.proto.smtp.events import MailParams, RcptParams


class GrammarError(Exception):
    """A command that does not parse; ``reply`` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.log_text())
        self.reply = reply


@dataclass(frozen=True, slots=True)
class CommandLine:
    verb: str  # upper-cased
    argument: str  # rest of the line after one space, as sent


# RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 3.3.
_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([^\s=\x00-\x1f]+))?$")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
# RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=";
# RFC 6533 3 lets UTF-8 through unescaped in SMTPUTF8 sessions.
_XTEXT = re.compile(r"^([!-*,-<>-~]|[^\x00-\x7f]|\+[0-9A-F]{2})*$")
_SOURCE_ROUTE = re.compile(r"^@[^:,]+(,@[^:,]+)*:")
# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_NUMBER = re.compile(r"^[0-9]{1,20}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def split_command(line: str) -> CommandLine:
    verb, _, argument = line.partition(" ")
    return CommandLine(verb.upper(), argument)


def decode_xtext(value: str) -> str:
    """RFC 3461 4: ``+HH`` escapes; other characters stand for themselves."""
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


def _xtext_param(key: str, value: str) -> str:
    """Decode an xtext parameter; refuse malformed xtext and decoded control characters, which
    would otherwise reach DSN and trace headers (header injection)."""
    if not _XTEXT.match(value):
        raise GrammarError(SYNTAX_ERROR.with_text(f"{key} must be xtext (RFC 3461 4)"))
    decoded = decode_xtext(value)
    if _CONTROL.search(decoded):
        raise GrammarError(SYNTAX_ERROR.with_text(f"{key} must not contain control characters"))
    return decoded


def _closing_bracket(text: str) -> int:
    """Index of the ``>`` that closes a path, skipping quoted strings (RFC 5321 4.1.2 Quoted-string)."""
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def _split_path(argument: str, prefix: str, error: Reply) -> tuple[str, str]:
    """``FROM:<path> params`` → (path without brackets, params). Tolerates spaces after the colon."""
    if argument[: len(prefix)].upper() != prefix:
        raise GrammarError(SYNTAX_ERROR.with_text(f"Syntax: {prefix}<address>"))
    rest = argument[len(prefix):].lstrip(" ")
    if not rest.startswith("<"):
        raise GrammarError(error.with_text(f"{error.lines[0]}: address must be in angle brackets"))
    close = _closing_bracket(rest)
    if close < 0:
        raise GrammarError(error.with_text(f"{error.lines[0]}: missing '>'"))
    path, params = rest[1:close], rest[close + 1:]
    if params and not params.startswith(" "):
        raise GrammarError(SYNTAX_ERROR)
    # RFC 5321 4.1.1.3 / C: a source route is accepted and ignored, but it must lead to a mailbox.
    mailbox = _SOURCE_ROUTE.sub("", path)
    if path and not mailbox:
        raise GrammarError(error.with_text(f"{error.lines[0]}: source route without a mailbox"))
    return mailbox, params.strip(" ")


def _parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split():
        match = _PARAM.match(item)
        if not match:
            raise GrammarError(SYNTAX_ERROR.with_text(f"Malformed parameter {item[:40]!a}"))
        key = match.group(1).upper()
        if key in params:
            raise GrammarError(SYNTAX_ERROR.with_text(f"Duplicate parameter {key}"))
        params[key] = match.group(2)
    return params


def _parse_address(path: str, utf8: bool, error: Reply) -> Address:
    if not path.isascii() and not utf8:
        raise GrammarError(SMTPUTF8_REQUIRED)
    try:
        return parse_mailbox(path, utf8=utf8)
    except AddressError as exc:
        raise GrammarError(error.with_text(f"{error.lines[0]}: {exc}")) from None


def _mail_params(raw: dict[str, str | None]) -> MailParams:
    size = body = ret = envid = auth = None
    smtputf8 = False
    for key, value in raw.items():
        if key == "SIZE":  # RFC 1870 6
            if value is None or not _NUMBER.match(value):
                raise GrammarError(SYNTAX_ERROR.with_text("SIZE needs a number"))
            size = int(value)
        elif key == "BODY":  # RFC 6152 2; BINARYMIME is not offered
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise GrammarError(PARAM_NOT_IMPLEMENTED.with_text("BODY must be 7BIT or 8BITMIME"))
            body = value.upper()
        elif key == "SMTPUTF8" and value is None:  # RFC 6531 3.4
            smtputf8 = True
        elif key == "RET" and value and value.upper() in ("FULL", "HDRS"):  # RFC 3461 4.3
            ret = value.upper()
        elif key == "ENVID" and value:  # RFC 3461 4.4
            envid = _xtext_param(key, value)[:100]
        elif key == "AUTH" and value:  # RFC 4954 5
            auth = _xtext_param(key, value)
        else:
            raise GrammarError(PARAM_NOT_IMPLEMENTED.with_text(f"MAIL parameter {key} not supported"))
    return MailParams(size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid, auth=auth)


_NOTIFY_VALUES = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


def _rcpt_params(raw: dict[str, str | None]) -> RcptParams:
    notify: tuple[str, ...] = ()
    orcpt = None
    for key, value in raw.items():
        if key == "NOTIFY" and value:  # RFC 3461 4.1
            notify = tuple(v.upper() for v in value.split(","))
            if not set(notify) <= _NOTIFY_VALUES or ("NEVER" in notify and len(notify) > 1):
                raise GrammarError(SYNTAX_ERROR.with_text("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"))
        elif key == "ORCPT" and value and ";" in value:  # RFC 3461 4.2
            orcpt = _xtext_param(key, value)
        else:
            raise GrammarError(PARAM_NOT_IMPLEMENTED.with_text(f"RCPT parameter {key} not supported"))
    return RcptParams(notify=notify, orcpt=orcpt)


def parse_mail(argument: str) -> tuple[Address | None, MailParams]:
    """``MAIL FROM:<reverse-path> [params]`` (RFC 5321 4.1.1.2)."""
    path, param_text = _split_path(argument, "FROM:", BAD_SENDER_SYNTAX)
    params = _mail_params(_parse_params(param_text))
    if path == "":
        return None, params
    return _parse_address(path, params.smtputf8, BAD_SENDER_SYNTAX), params


def parse_rcpt(argument: str, utf8: bool) -> tuple[Address, RcptParams, bool]:
    """``RCPT TO:<forward-path> [params]`` (RFC 5321 4.1.1.3). Third value: bare <Postmaster>."""
    path, param_text = _split_path(argument, "TO:", BAD_RECIPIENT_SYNTAX)
    params = _rcpt_params(_parse_params(param_text))
    if path.lower() == "postmaster":
        return Address("postmaster", ""), params, True
    return _parse_address(path, utf8, BAD_RECIPIENT_SYNTAX), params, False


def parse_bdat(argument: str) -> tuple[int, bool]:
    """``BDAT chunk-size [LAST]`` (RFC 3030 2)."""
    parts = argument.split()
    if not 1 <= len(parts) <= 2 or not _NUMBER.match(parts[0]):
        raise GrammarError(SYNTAX_ERROR.with_text("Syntax: BDAT <size> [LAST]"))
    if len(parts) == 2 and parts[1].upper() != "LAST":
        raise GrammarError(SYNTAX_ERROR.with_text("Syntax: BDAT <size> [LAST]"))
    return int(parts[0]), len(parts) == 2


def parse_auth(argument: str) -> tuple[str, str | None]:
    """``AUTH mechanism [initial-response]`` (RFC 4954 4)."""
    parts = argument.split()
    if not 1 <= len(parts) <= 2:
        raise GrammarError(SYNTAX_ERROR.with_text("Syntax: AUTH <mechanism> [initial-response]"))
    return parts[0].upper(), (parts[1] if len(parts) == 2 else None)


_HELO_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


def parse_helo(argument: str) -> str:
    """The client's name from HELO/EHLO (RFC 5321 4.1.1.1); lenient on form, strict on characters."""
    name = argument.strip(" ")
    if not _HELO_NAME.match(name):
        raise GrammarError(SYNTAX_ERROR.with_text("Syntax: EHLO <domain or address literal>"))
    return name
