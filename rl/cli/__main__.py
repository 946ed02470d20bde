"""`python -m neuralese.cli ...`: the `neuralese` command (what `accelerate launch -m neuralese.cli` runs)."""

import sys

from neuralese.cli import main

sys.exit(main())
