"""Setting passeur up without a text editor: the firm's invitation file, the connection
test, the `invite` and `setup` commands, and following changes of the config file."""
