"""`python -m minihash.cli`: the same as the `minihash` command."""
import sys

from . import main

sys.exit(main())
