"""Diagnostics run after the fact or beside a run, each behind ``flashcore diagnose <name>``."""
