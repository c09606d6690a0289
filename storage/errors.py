"""What the store and the notebook API raise: one base class, three kinds, each message naming the path."""


class StoreError(RuntimeError):
    """Anything the store cannot give; the message names the file or the study and says why."""


class StoreNotFound(StoreError):
    """No campaign, store or study where one was asked for."""


class StoreCorrupt(StoreError):
    """A file of the campaign exists but cannot be read (truncated metadata, a damaged database)."""


class NotInStore(StoreError):
    """The store is fine but lacks what was asked for: a field the study did not compute, an
    unknown structure, group or coordinate value."""
