"""``python -m z6.cli`` runs the z6 command line."""

from z6.cli.entry import main

main()
