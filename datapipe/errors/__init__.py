"""Collected errors: capture (:mod:`.capture`), rows (:mod:`.store`), groups
(:mod:`.groups`) and reprocessing (:mod:`.reprocess`)."""
