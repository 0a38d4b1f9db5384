"""``python -m streams`` is the ``banditlp`` command."""

from streams.cli import app

app()
