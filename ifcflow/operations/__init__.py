"""What a deployment runs and looks at: the worker process (which also releases batches' next runs), queue and
worker listings, prune."""
