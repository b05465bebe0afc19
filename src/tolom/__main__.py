"""`python -m tolom` is the `tolom` command."""

from tolom.cli import main

main()
