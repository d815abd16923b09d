"""nbupload's benchmark suite: nbupload against curl and Python peers, side by side.

``python -m benchmarks`` runs everything and writes Markdown and JSON under
``benchmarks/results/``; ``--quick`` is a small version. See ``docs/benchmarks.md``.
Modules are imported by the harness only, so a client child process (``benchmarks.peers``)
pays for nothing it does not use.
"""

__all__: list[str] = []
