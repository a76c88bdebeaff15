"""Local stack for development and tests: Kafka launcher, PostgreSQL setup, SMTP sink, the procure CLI, pytest fixtures."""
