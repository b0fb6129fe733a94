"""The operations core provides itself; importing this package registers them."""
from . import validate  # noqa: F401
