"""The web layer: small ASGI apps (one-click unsubscribe today, the console later). Imports only `shared`."""
