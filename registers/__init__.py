"""Register entries and names: table rows of a page as acts, their dates, natures and persons, and the names index.

Pure logic on plain records (no torch, no prefect): ``layout`` groups lines
into entries, ``dates``, ``natures`` and ``persons`` read an entry's fields,
``keys`` makes the normalized and phonetic keys, ``index`` writes and searches
the SQLite names index of a run.
"""
