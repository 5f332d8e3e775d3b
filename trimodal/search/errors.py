"""The one error type of the search engine: bad input a person can fix (one-line message)."""


class SearchError(ValueError):
    """A missing or inconsistent index or embedding run, or a request that does not fit it."""
