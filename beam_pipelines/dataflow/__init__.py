"""Running the jobs on Dataflow: the workers' environment (image and staging), the Flex
Templates and their launcher, renamed steps for ``--update``, and job control (watch, drain,
cancel). docs/dataflow.md tells the whole story."""
