"""Outreach: multi-step sequences sent from rotating mailboxes, in the lead's working hours, at most once."""
