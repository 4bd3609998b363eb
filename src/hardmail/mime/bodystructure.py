"""The IMAP BODY and BODYSTRUCTURE values of a message (RFC 9051 7.5.2, RFC 3501 7.4.2) from its
MIME tree (:mod:`hardmail.mime.structure`): basic, text (with lines), message/rfc822 (with its
envelope, body and lines) and multipart bodies, BODYSTRUCTURE with the extension data (md5,
disposition, language, location; a multipart's parameters, disposition, language, location).

Values are in the generic nested form of the IMAP encoder: None is NIL, int a number, str/bytes
a string, lists are parenthesised, :class:`~hardmail.imap.values.Run` holds a multipart's bodies
(written with no space between them)."""

from __future__ import annotations

from typing import Any

from hardmail.imap.values import Run
from hardmail.mime.envelope import envelope
from hardmail.mime.params import ParamValue, parse_language
from hardmail.mime.structure import Part


def _params(value: ParamValue) -> list[Any] | None:
    """body-fld-param: a list of name/value strings, or NIL when there are none."""
    pairs: list[Any] = []
    for name, text in value.params:
        pairs.extend((name, text))
    return pairs or None


def _type_params(part: Part) -> list[Any] | None:
    """The Content-Type parameters; a text part without a charset gets ``charset us-ascii``
    (RFC 2045 5.2), as Dovecot shows it (a ``charset*`` does not count, as for Dovecot)."""
    pairs = _params(part.content_type) or []
    has_charset = any(name.lower() == "charset" for name, _ in part.content_type.params)
    if part.maintype == "text" and not has_charset:
        pairs.extend(("charset", "us-ascii"))
    return pairs or None


def _disposition(part: Part) -> list[Any] | None:
    parsed = part.disposition
    if parsed is None or not parsed.value:
        return None
    return [parsed.original[0], _params(parsed)]


def _language(part: Part) -> Any:
    value = part.field_value("content-language")
    tags = parse_language(value) if value is not None else []
    return tags or None  # always a list, as Dovecot sends it (RFC 9051 also allows a string)


def _field(part: Part, name: str) -> bytes | None:
    """A Content-* field's value; none of a message that is not MIME (no MIME-Version and no
    Content-Type: RFC 2045 4), as Dovecot shows it."""
    return part.field_value(name) if part.mime else None


def _extension(part: Part) -> list[Any]:
    """body-ext-1part after body-fld-md5, or body-ext-mpart after the parameters."""
    if not part.mime:
        return [None, None, None]
    return [_disposition(part), _language(part), part.field_value("content-location")]


def _fields(part: Part) -> list[Any]:
    """body-fields: parameters, id, description, encoding, size."""
    return [
        _type_params(part),
        _field(part, "content-id"),
        _field(part, "content-description"),
        part.encoding_as_written if part.mime else "7bit",
        part.body_size,
    ]


def body_structure(part: Part, data: bytes, *, extended: bool = True, message_global: bool = False) -> list[Any]:
    """BODYSTRUCTURE (``extended``) or BODY of ``part``, whose offsets index ``data``.

    ``message_global``: a message/global part is a message body, with its envelope and body
    (IMAP4rev2: RFC 9051 7.5.2 media-message); without it, a basic body (IMAP4rev1: RFC 3501
    7.4.2 knows only message/rfc822 there), as Dovecot 2.3 shows it to every client."""
    if part.is_multipart:
        return _multipart(part, data, extended, message_global)
    # a multipart too deep to read is shown as an opaque leaf
    kind = ["application", "octet-stream"] if part.overflow else list(part.content_type.original)
    shown_as_message = part.message is not None and (message_global or part.subtype == "rfc822")
    if shown_as_message:
        kind = ["message", part.subtype]  # in lower case whatever the header says (as Dovecot)
    out: list[Any] = [*kind, *_fields(part)]
    if shown_as_message and part.message is not None:
        inner = body_structure(part.message, data, extended=extended, message_global=message_global)
        out += [envelope(part.message.header), inner, part.lines]
    elif part.maintype == "text" and not part.overflow:
        out.append(part.lines)
    if extended:
        out += [_field(part, "content-md5"), *_extension(part)]
    return out


def _multipart(part: Part, data: bytes, extended: bool, message_global: bool) -> list[Any]:
    if part.children:
        bodies = [body_structure(child, data, extended=extended, message_global=message_global)
                  for child in part.children]
    else:  # RFC 9051 7.5.2: at least one body; a multipart without parts shows an empty one
        bodies = [_empty_text(extended)]
    out: list[Any] = [Run(bodies), part.content_type.original[1]]
    if extended:
        out += [_params(part.content_type), *_extension(part)]
    return out


def _empty_text(extended: bool) -> list[Any]:
    out: list[Any] = ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 0, 0]
    return [*out, None, None, None, None] if extended else out
