"""Local stand-in for Login mit DATEV, DATEV accounting-documents, Lexware Office and a dashboard IdP.

See docs/emulator.md. Loopback use only: the admin API is unauthenticated.
"""
