"""The quotes service of the procurement platform."""
