"""The one base class for errors a user can cause and fix.

Every entry point (inference.py, the apps, train.py) catches `UserError` alone: such an error is printed as one
line (or shown in the page) and the process exits with status 2 where it is a setup error. Its message names
the input by its role and the user's file name and says what to do. Anything else is a bug and keeps its
traceback. The concrete classes (AudioError, ConfigError, ...) live beside the code that raises them.
"""
from __future__ import annotations


class UserError(Exception):
    """A bad input file, flag, config, dataset or output location; the message says which and what to do."""
