"""Query understanding: what a query means before it is searched (misspelt names, entities asked about)."""
