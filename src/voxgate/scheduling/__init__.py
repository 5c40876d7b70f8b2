"""Worker pool, priorities and cancellation: how engine calls share the CPU."""
