"""``python -m recoforge`` runs the command line."""

from recoforge.cli import main

main()
