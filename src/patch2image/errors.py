"""The one exception the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user: a file, a key or a value, named in the message."""
