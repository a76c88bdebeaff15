"""The notifier service: stakeholder emails for procurement status changes (section 6)."""
