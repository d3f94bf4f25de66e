"""Mailboxes: the client's sending accounts (SMTP/IMAP settings, caps, ramp, status) and their health."""
