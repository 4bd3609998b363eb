"""The structure of an Internet message (RFC 5322, MIME): the one header-block parser every path uses
(SMTP MX and submission, DMARC, originator checks, trust-field removal, IMAP), the address parsing
of originator fields and of IMAP ENVELOPE, Content-* parameters, the MIME tree with byte offsets,
IMAP's BODYSTRUCTURE, ENVELOPE and BODY[section] values, and the decoded text SEARCH reads.
Pure: no I/O."""
