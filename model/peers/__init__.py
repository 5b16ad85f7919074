"""The runtimes a user could run the seed model in instead of stardetr, timed one at a time (make bench-peers)."""
