"""DNS worker processes: `server.workers` of them answer on SO_REUSEPORT sockets
while the main process probes, serves the API and syncs Route53."""
