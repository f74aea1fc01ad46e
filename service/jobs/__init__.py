"""Training jobs: the queue interface, the local trainer, and one fit's execution."""
