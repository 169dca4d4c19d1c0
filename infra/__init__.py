"""The Pulumi program that deploys StreamForge on Google Cloud (``pulumi up``; docs/infra.md).

One ComponentResource per area, each in its own module; ``program.deploy`` wires them from
the stack's settings (``settings.py``). Names, schemas and template parameters are read from
the project's own sources (the config, the Avro schemas, Debezium's properties file, the
packaged artifacts), never restated here.
"""
