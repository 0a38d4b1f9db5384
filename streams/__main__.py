"""``python -m streams`` is the ``banditlp`` command."""

from streams.cli.app import app

app()
