"""Sans-IO checks of SDP text, before any parser sees it."""
