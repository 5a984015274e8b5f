"""The demo: ``python -m demo`` runs Imprimatur end to end on this machine (see ``demo/__main__.py``)."""
