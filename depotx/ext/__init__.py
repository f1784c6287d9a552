"""Integrations with other libraries (SQLAlchemy columns); each needs its own extra."""
