"""Ranking and the leaderboard views built on it."""
