"""The one exception type for problems a user can fix (bad config, file, path).

Entry points catch it and print its one-line message without a traceback;
anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """A user-fixable problem; the message says what to do."""
