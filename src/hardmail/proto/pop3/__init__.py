"""The sans-IO POP3 server core (RFC 1939 with CAPA, RFC 2449; STLS, RFC 2595; AUTH, RFC 5034).

``connection`` turns bytes into command events and replies into bytes, ``maildrop`` is the
session's numbered view of the INBOX (marks, sizes, UIDL), ``multiline`` the streaming encoder of
multi-line responses (byte-stuffing, CRLF line ends), ``replies`` the response values.
No asyncio, no sockets, no clock.
"""
