"""`python -m vcapp` runs the CLI."""

from vcapp.cli import main

main()
