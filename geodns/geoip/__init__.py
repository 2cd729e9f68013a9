"""GeoIP: what a MaxMind-format database says about a client address."""
