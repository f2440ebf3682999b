"""Evaluation reports for people: metric tables, PNG pictures and a self-contained HTML page.

Used by the CLI and scripts, never by the server (matplotlib is imported on first use only).
"""
