"""The one exception type for bad user input.

The command-line entry points catch it and print its message alone (no traceback), so every defect in a
table, a scan or a config reaches the user as one line naming the file, the row or subject and the defect.
"""


class InputError(Exception):
    """A defect in user-provided input (table, scan, config). The message is shown to the user as is."""
