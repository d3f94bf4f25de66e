"""The chaos suite: real processes killed, a database restarted, a provider misbehaving; invariants checked in SQL.

`make chaos` (python -m chaos) runs every scenario at full size and prints a table;
tests/integration/test_chaos_fast.py runs the same scenarios small, in `make test`. docs/reliability.md explains both.
"""
