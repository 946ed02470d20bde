"""`python -m neuralese ...`: the `neuralese` command."""

import sys

from neuralese.cli import main

sys.exit(main())
