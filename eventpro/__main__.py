"""`python -m eventpro` is the `eventpro` command."""

from eventpro.cli import main

main()
