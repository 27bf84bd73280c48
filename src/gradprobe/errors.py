"""Exceptions that mean "the user asked for something that cannot be done".

The CLI turns an `InputError` into a one-paragraph message and exit code 2; anything else is a
bug or an environment failure (exit code 1).
"""


class InputError(ValueError):
    """Bad user input: the message names the problem and how to fix it."""
