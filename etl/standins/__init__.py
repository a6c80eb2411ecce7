"""standins stage."""
