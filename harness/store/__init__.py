"""Where results are kept: the SQLite results database, and copying or merging such databases."""
