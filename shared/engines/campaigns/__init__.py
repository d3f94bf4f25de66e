"""Campaigns: their ICP, status, sequence steps and sending schedule, and their console read model."""
