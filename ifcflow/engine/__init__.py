"""Running a plan on RQ: enqueue, records, the status aggregator, repairs (reconcile), cancel and retry, run-end
hooks, the cache."""
