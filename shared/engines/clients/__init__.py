"""Clients (the agencies' customers): their rows, subscriptions and credits."""
