"""CLI commands, one module per noun; vcapp/cli.py attaches them to the root group."""
