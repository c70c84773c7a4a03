"""Training: one readable loop (``loop.py``) and checkpoint helpers (``checkpoint.py``)."""
