"""``python -m nslib``: see ``nslib.cli``."""
import sys

from .cli import main

sys.exit(main())
