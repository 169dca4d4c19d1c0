"""A simulated Dataflow worker: run as a script by an interpreter that holds only Beam and what
a job ships to its workers (tests/dataflow/test_worker.py). It must not see the checkout.

    python worker_check.py CASES_JSON

For each case ``{"proto": PATH, "samples": {parse step: [payload, ...]}}`` it loads every
serialized DoFn, CombineFn, window function and coder of the job's pipeline proto (as the SDK
harness does when it starts a bundle), then runs the sample payloads through the job's parse
step. It prints a JSON list, one entry per case: what it loaded, what failed (with the
error), and what the parse step made of the samples.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections import Counter
from typing import Any

from apache_beam.internal import pickler
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners import pipeline_context

_COMBINES = {
    common_urns.composites.COMBINE_PER_KEY.urn,
    common_urns.composites.COMBINE_GLOBALLY.urn,
    common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
    common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
    common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn,
    common_urns.combine_components.COMBINE_GROUPED_VALUES.urn,
}


def load_everything(proto: beam_runner_api_pb2.Pipeline) -> tuple[Counter, list[str], dict[str, Any]]:
    loaded: Counter = Counter()
    failures: list[str] = []
    dofns: dict[str, Any] = {}

    def attempt(kind: str, where: str, load: Any, *args: Any) -> Any:
        try:
            value = load(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(f"{kind} {where}: {type(exc).__name__}: {exc}")
            return None
        loaded[kind] += 1
        return value

    for transform in proto.components.transforms.values():
        spec = transform.spec
        if spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(spec.payload)
            if payload.do_fn.urn == python_urns.PICKLED_DOFN_INFO:
                info = attempt("DoFn", transform.unique_name, pickler.loads, payload.do_fn.payload)
                if info is not None:
                    dofns[transform.unique_name] = info[0]
        elif spec.urn in _COMBINES:
            payload = beam_runner_api_pb2.CombinePayload.FromString(spec.payload)
            if payload.combine_fn.urn == python_urns.PICKLED_COMBINE_FN:
                attempt("CombineFn", transform.unique_name, pickler.loads, payload.combine_fn.payload)
    for name, strategy in proto.components.windowing_strategies.items():
        if strategy.window_fn.urn == python_urns.PICKLED_WINDOWFN:
            attempt("WindowFn", name, pickler.loads, strategy.window_fn.payload)
    context = pipeline_context.PipelineContext(proto.components)
    for coder_id in proto.components.coders:
        attempt("Coder", coder_id, context.coders.get_by_id, coder_id)
    return loaded, failures, dofns


def parse_samples(dofns: dict[str, Any], samples: dict[str, Any]) -> dict[str, Any]:
    """Each sample list through the step that parses it; counts of what came out."""
    from beam_pipelines.common.packing import pack

    results: dict[str, Any] = {}
    for step, payloads in samples.items():
        fn = dofns[step]
        fn.setup()
        if "_FirstValidOfEachId" in step:  # batch: a packed shard of lines
            elements = [(0, [("json", pack([p.encode() for p in payloads]))])]  # (encoding, packed lines)
        elif "(_Validate)" in step:  # streaming: Pub/Sub messages
            elements = [PubsubMessage(p.encode(), {"encoding": "json"}) for p in payloads]
        else:  # CDC: message data
            elements = [p.encode() for p in payloads]
        events = dead = 0
        for element in elements:
            for out in fn.process(element) or ():
                if isinstance(out, TaggedOutput):
                    dead += 1
                else:
                    value = getattr(out, "value", out)  # a TimestampedValue in streaming
                    events += len(value) if isinstance(value, list) else 1
        results[step] = {"events": events, "dead_letters": dead}
    return results


def check(proto_path: str, samples: dict[str, Any]) -> dict[str, Any]:
    proto = beam_runner_api_pb2.Pipeline.FromString(open(proto_path, "rb").read())
    loaded, failures, dofns = load_everything(proto)
    try:
        parsed = parse_samples(dofns, samples)
    except Exception:  # noqa: BLE001
        failures.append("parse step: " + traceback.format_exc(limit=3))
        parsed = {}
    return {"loaded": loaded, "failures": failures, "parsed": parsed}


def main() -> None:
    cases = json.loads(open(sys.argv[1], encoding="utf-8").read())
    print(json.dumps([check(case["proto"], case["samples"]) for case in cases]))


if __name__ == "__main__":
    main()
