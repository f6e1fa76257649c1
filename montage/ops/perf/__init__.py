"""Performance guard: reference workload, measurement, baseline, guard, report."""
