"""The HTTP API (``ifcflow serve``): the original system's gateway, pipelines, live events and webhooks.

Importing this package imports nothing from FastAPI.
"""
