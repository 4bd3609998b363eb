"""``python -m hardmail`` runs the command-line interface."""

from hardmail.admin.cli import main

main()
