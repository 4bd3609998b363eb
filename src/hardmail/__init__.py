"""hardmail: a self-hosted mail server that is secure by default."""

__version__ = "0.1.0"
