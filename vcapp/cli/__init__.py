"""The `vcapp` command: main.py is the root group, one module per noun attaches its commands,
client.py talks to the admin API. Commands import the layers below them when they run."""
