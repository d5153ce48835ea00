"""``python -m wiser_async`` runs the command line."""

from .cli import main

main()
