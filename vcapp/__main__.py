"""`python -m vcapp` runs the CLI."""

from vcapp.cli.main import main

main()
