"""Runtime safeguards: memory limits read from the process's own cgroup (see memory_manager)."""
