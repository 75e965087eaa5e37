"""alertd: watch business news feeds, match a watchlist, email explained digests."""

__version__ = "0.1.0"
