"""Usage: the feed endpoint, intake, batching and the flow that sends a batch to Zuora."""
