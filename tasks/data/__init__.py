"""Data: ingest a snapshot, validate it (Great Expectations), prepare features, audit the data for bias."""
