"""Support: secrets kept out of logs, `passeur log`, and the diagnostic archive for support."""
