"""The servers a benchmark runs side by side (hardmail, Postfix, aiosmtpd), each a child process on
loopback, and the bookkeeping that stops every one of them by PID."""
