"""``python -m mmx`` runs the command line."""

from mmx.cli.app import app

app(prog_name="mmx")
