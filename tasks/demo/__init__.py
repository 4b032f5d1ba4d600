"""Demo: synthetic applications and traffic for `steward run` and the benches."""
