"""depotx benchmarks: every scenario side by side with its peers, in one run.

Run ``python -m benchmarks`` from the repository root (``--quick`` for a short
run, ``--json PATH`` to keep the figures). Benchmarks are not tests: nothing here
fails on a ratio; the table says which targets were met on this machine, today.
"""

from __future__ import annotations

__all__: list[str] = []
