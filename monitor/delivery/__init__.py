"""The outbox dispatcher and the sinks: every event delivered at least once, in order."""
