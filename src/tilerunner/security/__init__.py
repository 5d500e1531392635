"""Server-mode security: API keys and their scopes, checks of client-supplied URLs."""
