"""The structure of an Internet message (RFC 5322, MIME): the one header-block parser every path uses
(SMTP MX and submission, DMARC, originator checks, trust-field removal; later IMAP ENVELOPE and
BODYSTRUCTURE) and the address parsing of originator fields. Pure: no I/O."""
