"""Layered recording (sans-IO but for :mod:`.writer`): a recorder per track, fed the
track's RTP, cuts segments at keyframes and returns one file per layer per segment, and the
manifest that says which files a player fetches for each level (docs/recording.md)."""
