"""Learned quality router: prompt -> model, trained offline on routing records (see README.md)."""

from polyroute.learned_router.router import Decision, LearnedRouter

__all__ = ["Decision", "LearnedRouter"]
