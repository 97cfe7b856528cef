"""Expected failures: bad input, a policy that stopped a stage, a model that cannot be loaded.

The CLI prints these as one clear message (no traceback); anything else is a bug and keeps its traceback.
"""


class TatarError(RuntimeError):
    """A failure whose message tells the user what is wrong and which record, key or file is at fault."""
