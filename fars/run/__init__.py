"""A run's records: the stage contracts, the project and usage records, the ledger, the RunRecord built from it, and the run folder."""
