"""Training of the engine's learned parts, apart from serving: nothing here runs for a query."""
