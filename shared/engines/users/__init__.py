"""Console users: accounts, sign-in with lockout, and the database role a signed-in user's transaction runs in."""
