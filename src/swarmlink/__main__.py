"""``python -m swarmlink`` runs the CLI."""

from .cli import main

main()
