"""Change data capture, locally: the shop's PostgreSQL -> the real Debezium connector -> messages.

In production Debezium Server (streamforge/cdc/debezium/application.properties) streams the database's
changes to Pub/Sub. Here the same connector runs in-process through pydbzengine with the
same properties (``config``), publishing what Debezium Server's Pub/Sub sink publishes
(``outputs``) to Pub/Sub, Kafka or JSONL files; ``workload`` drives realistic OLTP traffic
into the database. The Beam job that consumes the messages is in beam_pipelines/cdc/.
"""
