"""Support: the log, and the diagnostic archive for the accountant's support."""
