import pytest

from facetwin.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    """Root of ../shared/data (or $FACETWIN_DATA); skips the test where it is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"research data not found at {root} (set FACETWIN_DATA to its location)")
    return root
