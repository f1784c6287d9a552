"""The servers under test, each importable by uvicorn or gunicorn as ``module:app``.

They read what to serve from environment variables set by the harness
(``BENCH_ROOT``: the local storage folder, ``BENCH_IDS``: the file ids the
in-memory peer preloads), so one data set is served by every contender.
"""
