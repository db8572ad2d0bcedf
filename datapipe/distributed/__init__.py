"""Distributed runs on Celery: the caller's side (:mod:`.dispatch`: dispatch, run
handles, resend), the items' encoding (:mod:`.chunks`), the worker's side
(:mod:`.worker`, with the chunk's record in :mod:`.ledger`)."""
