"""The live leaderboard: WebSocket connections, coalesced fan-out, and the wire protocol."""
