"""Pure IMAP logic above the wire protocol: values, SEARCH evaluation, SORT and THREAD, the selected-mailbox view."""
