"""The one door to the models: a litellm client with ledger, cache, budget, retries and schemas."""
