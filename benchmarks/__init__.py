"""Benchmarks of datapipe against a naive loop and the ORM's raw write limit.

Run ``benchmarks/run`` (a throwaway PostgreSQL server, like ``scripts/test``) or
``python -m benchmarks`` (the database of ``DATABASE_URL``, else a SQLite file). The
scenarios are in :mod:`benchmarks.scenarios`, the targets in :mod:`benchmarks.targets`.
"""
