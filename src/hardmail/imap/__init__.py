"""IMAP logic above the protocol core and below the server: SEARCH evaluation, the selected view."""
