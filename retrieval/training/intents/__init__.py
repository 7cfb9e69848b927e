"""Training and evaluating the intent head of the router."""
