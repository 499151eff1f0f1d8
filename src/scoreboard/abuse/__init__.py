"""Anti-abuse: velocity rules over sliding windows, flags, and suspensions."""
