"""The protocol sessions of this build: importing this module imports every session module, and
each registers the listener kinds it serves (:func:`hardmail.server.listener.register_session`).

A new protocol adds one import line here; nothing else in the listener changes.
"""

from __future__ import annotations

import hardmail.server.imap_session  # imap, imaps
import hardmail.server.pop3_session  # pop3, pop3s
import hardmail.server.smtp_session  # noqa: F401  # smtp, submission, submissions
