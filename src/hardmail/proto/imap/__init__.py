"""Sans-IO IMAP4rev2/IMAP4rev1 server core (RFC 9051, RFC 3501): parser, state, response encoder.

- ``connection.ImapServerConnection(ImapOptions)``: ``receive_data`` / ``next_event`` (framing,
  literals, limits, states); events and command dataclasses in ``commands``.
- ``grammar`` (command table and selected-state commands), ``parser`` (the other commands),
  ``parse_fetch``, ``parse_search``, ``lexer`` (RFC 9051 9 tokens), ``searchkeys`` (the SEARCH
  tree), ``sequence`` (sequence sets), ``mutf7`` (modified UTF-7), ``state`` (ConnState, options).
- ``encode``: tagged/untagged/continuation lines and the generic value encoder for responses.
"""
