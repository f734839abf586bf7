"""Sans-IO forwarding: per-source ingress bookkeeping and per-subscriber rewriting."""
