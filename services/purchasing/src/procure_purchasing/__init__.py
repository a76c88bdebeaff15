"""The purchasing service of the procurement platform."""
