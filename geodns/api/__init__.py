"""What operators are served: the HTTP API (admin.py), the status document (status.py) and
page (statuspage/), Prometheus metrics (metrics.py) and the CLI's HTTP client (apiclient.py)."""
