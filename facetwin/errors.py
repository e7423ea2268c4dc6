"""One exception type for every user-facing failure.

The CLI turns a :class:`FacetwinError` into a one-line message on stderr and exit code 2;
library users catch it like any other exception.
"""


class FacetwinError(Exception):
    """A failure caused by the user's input (bad path, corrupt file, no face, wrong model file, config mistake)."""
