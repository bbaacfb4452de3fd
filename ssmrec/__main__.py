"""``python -m ssmrec``: the ``ssmrec`` command."""

import sys

from ssmrec.cli import main

sys.exit(main())
