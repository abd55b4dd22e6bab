"""The lowest layer: how money, time and months are written and counted, for every app.

It imports nothing from the project's apps, so routing, agents and metrics can all use it.
"""
