"""The phase-gate toolkit: phases, gates, proof bundles, perf guard and canary."""
