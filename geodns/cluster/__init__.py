"""Several instances, one truth: peer health exchange, votes, partitions and the governor."""
