"""Health: probes (checks/), rise/fall hysteresis (health.py, pure), the scheduler
(monitor.py), the published snapshots (snapshot.py) with operator overrides beside the
probed states (overrides.py), and the last-known states on disk (statefile.py)."""
