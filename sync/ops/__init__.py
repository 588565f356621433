"""Operating zkbridge: the dashboard, health, metrics, connection checks, structured logs, retention."""
