"""Many runs: batches (one run per matching file) and cron schedules."""
