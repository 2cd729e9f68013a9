"""Steering: which members a pool answers with (policy.py, pure), operator drains kept on
disk (overridestore.py), and why a name answers what it does (explain.py)."""
