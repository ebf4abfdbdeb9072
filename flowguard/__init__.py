"""flowguard: automated responses to Celery task failures, over Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flowguard")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
