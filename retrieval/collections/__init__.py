"""The collections an engine serves from: which one is live, and switching between them safely."""
