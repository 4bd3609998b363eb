"""Sans-IO IMAP4rev2/IMAP4rev1 server core (RFC 9051, RFC 3501): parser, state, response encoder."""
