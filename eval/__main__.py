"""`python -m eval`: the same as the `search-eval` console script."""

from __future__ import annotations

import sys

from eval.cli import main

sys.exit(main())
