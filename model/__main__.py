"""`python -m model` runs the `unmask` command."""

import sys

from model.cli import main

sys.exit(main())
