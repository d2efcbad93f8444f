"""``python -m dtcore``: the ``dtcore`` command."""
import sys

from dtcore.cli.main import main

sys.exit(main())
