"""Sans-IO RTP and RTCP: parsing, building and rewriting packets (RFC 3550, 4585, 5104, 8285)."""
