"""The operations core provides itself; importing this package registers them."""
from . import reindex, validate  # noqa: F401
