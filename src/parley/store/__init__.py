"""Durable state behind one async interface: SQLite by default, PostgreSQL by URL."""
