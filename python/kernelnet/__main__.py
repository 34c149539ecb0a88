"""``python -m kernelnet`` runs the ``kernelnet`` command."""
import sys

from .cli import main

sys.exit(main())
