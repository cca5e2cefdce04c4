"""The evaluation harness: statistics and comparison of runs, HTML reports, W&B dashboards."""
