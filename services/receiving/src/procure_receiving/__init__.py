"""The receiving service of the procurement platform."""
