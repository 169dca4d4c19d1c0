"""StreamForge: serverless real-time e-commerce analytics on Google Cloud.

The shared core: event model and schemas, configuration, the traffic simulator and the CLI.
"""

__version__ = "0.1.0"
