"""`python -m cadence`: the command line."""

from cadence.cli.app import main

main()
