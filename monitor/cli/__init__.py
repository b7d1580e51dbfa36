"""The commands: thin, they parse arguments, call the daemon, store or simulator, and print."""
