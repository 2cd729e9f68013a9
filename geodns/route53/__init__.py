"""Route53 sync mode: health-driven weights pushed into weighted record sets.

model.py, desired.py and plan.py are pure (no boto3); client.py talks to AWS;
sync.py runs the reconcile loop.
"""
