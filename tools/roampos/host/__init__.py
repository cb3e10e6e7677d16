"""Acquirer host: authorization, region controls, ledger, settlement, terminal management."""
__all__: list = []
