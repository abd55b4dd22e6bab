"""Staff pages: the cost, usage, latency and local-share history (`history`) and the monthly report (`report`).

Tables are declared as column specs (core.tables): each names its header, the value it reads and
its kind, and core.formatting writes the value for the page or the CSV.
"""
