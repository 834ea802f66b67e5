"""The one error the results store raises: a message naming the file and what is wrong with it."""
from __future__ import annotations


class StoreError(RuntimeError):
    pass
