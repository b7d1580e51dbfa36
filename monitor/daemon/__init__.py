"""The running process: wiring, the job book, scheduling, detail polls, usage sweeps, discovery."""
