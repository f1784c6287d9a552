"""``python -m benchmarks``: run the scenarios and print the table."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
