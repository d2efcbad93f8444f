"""``python -m dtcore``: the ``dtcore`` command."""
from dtcore.cli.main import entry

entry()
