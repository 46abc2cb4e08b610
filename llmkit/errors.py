"""The one exception type a user sees: a message that says what is wrong and what to do."""


class LlmkitError(Exception):
    """Bad input a user can act on. The CLI prints it as one line and exits with code 2."""
