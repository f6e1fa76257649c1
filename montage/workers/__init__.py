"""Job execution: executors (how a job is rendered) and the lease-holding worker loop."""
