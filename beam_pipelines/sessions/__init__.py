"""User sessions: clickstream events per user in session windows, aggregated."""
