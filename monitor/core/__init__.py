"""The domain, pure: snapshots, state, transitions, events, lifecycle, hangs and reasons."""
