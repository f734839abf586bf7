"""The one error type codec payload parsers raise."""


class CodecError(ValueError):
    """A payload descriptor or header extension that does not parse."""
