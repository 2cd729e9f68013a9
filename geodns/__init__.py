"""geodns: self-hosted DNS failover across datacenters."""

__version__ = "0.1.0"
