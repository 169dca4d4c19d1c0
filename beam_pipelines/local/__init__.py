"""The local streaming form: Pub/Sub fed to Beam's local runner by event time, and its runner patch."""
