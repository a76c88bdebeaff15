"""The notifier service of the procurement platform."""
