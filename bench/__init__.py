"""edgefc's benchmarks (``make bench``): each ``bench_*.py`` module has a ``run()`` returning CONTRACT §8 figures.

Every figure runs its baseline (DESIGN §6) in the same run and reports the ratio; ``python -m bench`` runs them
all, shows progress, prints a table and writes ``bench/results.json``; ``python -m bench NAME...`` runs some.
"""
