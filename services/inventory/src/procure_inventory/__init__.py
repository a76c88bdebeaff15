"""The inventory service of the procurement platform."""
