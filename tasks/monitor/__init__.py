"""Monitor: drift statistics and the report of a window of served decisions."""
