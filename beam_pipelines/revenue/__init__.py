"""Real-time revenue: PAID orders in one-minute event-time windows."""
