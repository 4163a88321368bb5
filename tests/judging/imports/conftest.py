import pytest


@pytest.fixture
def uploads(settings, tmp_path):
    """A directory of the test's own for saved uploads, shared with any worker it starts."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR
