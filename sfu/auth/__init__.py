"""Access control: signed tokens."""
