"""Leads: import from CSV, the rules their fields are read by, scoring against an ICP, and their story."""
