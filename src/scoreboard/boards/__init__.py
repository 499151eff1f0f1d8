"""Boards: named rankings with their own rules and reset schedules, and their periods."""
