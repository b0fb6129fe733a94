"""Storage: one repository interface, SQLite and PostgreSQL implementations."""
from .base import IndexRows, Repository, Row, Session, StorageError, WriteConflict, open_repository

__all__ = ["IndexRows", "Repository", "Row", "Session", "StorageError", "WriteConflict", "open_repository"]
