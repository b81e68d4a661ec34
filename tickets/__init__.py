"""Tickets with SLA (TK-1 … TK-4). The app is registered so its schema is part of every tenant."""
