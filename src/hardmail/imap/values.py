"""IMAP value types shared by the encoder and the MIME part."""


class Atom(str):
    """An IMAP atom written as is (NIL, flags, keywords)."""


class Run(tuple):  # type: ignore[type-arg]
    """Values written one after the other with no space and no parentheses of their own: the
    bodies of a multipart (RFC 9051 body-type-mpart = 1*body) and the addresses of an envelope
    address list (env-from = "(" 1*address ")"), as Dovecot writes them: ``((...)(...) "mixed")``."""
