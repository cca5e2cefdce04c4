"""The reviewer measured against human reviews: the harness, agreement metrics, trivial baselines, test-retest noise, fitted calibrations and their report."""
