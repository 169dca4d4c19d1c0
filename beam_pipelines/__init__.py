"""StreamForge's Apache Beam jobs (Dataflow in production, the DirectRunner locally).

Each job's business logic is plain, typed Python beside it (e.g. ``fraud/rules.py``),
tested without Beam; the Beam code only wires it together.
"""
