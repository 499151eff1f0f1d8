"""Action tickets: the only way a score may go up."""
