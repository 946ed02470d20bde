"""A plug-in whose own import fails."""

import a_module_that_is_not_installed  # noqa: F401


def make():
    raise AssertionError("never reached")
