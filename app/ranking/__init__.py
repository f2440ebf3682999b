"""Ranking pools for labelling from the command line: chunked files, a server, Ray."""
