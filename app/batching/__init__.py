"""Micro-batching: concurrent requests for one model fused into shared sampling runs."""
