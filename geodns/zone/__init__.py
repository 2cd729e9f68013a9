"""Zone data: names and the compiled, immutable zones that config builds and answers read (pure)."""
