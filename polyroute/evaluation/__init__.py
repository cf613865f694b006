"""Evidence for routing decisions: `polyroute compare` and shadow traffic.

Both produce routing records (`polyroute.learned_router.records`), the format the learned router
trains on; see docs/evaluation.md.
"""
