"""`python -m mom` is the `mom` command."""

from mom.cli import main

main()
