"""Who is calling: JWT verification, scopes, and the guards that enforce them."""
