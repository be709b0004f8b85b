"""Durable state behind one async interface: SQLite by default (issue 3 adds PostgreSQL)."""
