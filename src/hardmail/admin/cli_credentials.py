"""Placeholder: replaced by the real module."""

import typer


def register(app: typer.Typer) -> None:
    return None
