"""``python -m ssmrec.cli`` (as ``torchrun -m ssmrec.cli`` runs it): the ``ssmrec`` command."""

import sys

from ssmrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
