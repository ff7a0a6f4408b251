"""The accountant's web endpoint: signed index, publishing, polling and downloads."""
