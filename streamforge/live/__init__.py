"""The whole system live on one machine (`streamforge up`): system.py starts, watches and stops it; progress.py is the jobs' progress files."""
