"""`python -m fluxroute` runs the CLI."""

import sys

from fluxroute.cli import main

sys.exit(main())
