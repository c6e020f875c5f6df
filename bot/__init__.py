"""deploybot: the deploy engine, its store and its use cases. Nothing in here knows about Slack."""
