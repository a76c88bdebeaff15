"""The shipping service of the procurement platform."""
