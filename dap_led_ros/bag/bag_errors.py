"""The one error the bag tools raise for bad input or a refused write."""


class BagError(Exception):
    """A bag cannot be read or written as asked; the message says why."""
