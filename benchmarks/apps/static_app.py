"""Starlette ``StaticFiles`` over the same folder: ``/static/<fileid>/file``."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=os.environ["BENCH_ROOT"]))])
