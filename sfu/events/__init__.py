"""Events for operators, sans-IO: what happens in rooms (:mod:`.model`), its log lines and the
logging setup (:mod:`.logs`), and webhooks: bodies, signatures, the queue and its retries
(:mod:`.webhooks`).  The HTTP delivery is an adapter: ``sfu/signaling/webhooks.py``."""
