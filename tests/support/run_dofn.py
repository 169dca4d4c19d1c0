"""Runs one DoFn of a built job, as a worker would: ``python run_dofn.py PIPELINE_PROTO STEP_SUFFIX``.

The DoFn is the job's own (unpickled from the pipeline proto the launcher wrote); it is set
up, given one element (None), and torn down. Its outputs are printed, one per line. Used to
run what a job does on its workers against an emulator when the rest of the job cannot run
here (the CDC job's replica views, on the BigQuery emulator)."""

from __future__ import annotations

import sys

from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2


def main(proto_path: str, suffix: str) -> int:
    with open(proto_path, "rb") as f:
        pipeline = beam_runner_api_pb2.Pipeline.FromString(f.read())
    (transform,) = [
        t
        for t in pipeline.components.transforms.values()
        if t.spec.urn == common_urns.primitives.PAR_DO.urn and t.unique_name.endswith(suffix)
    ]
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    assert payload.do_fn.urn == python_urns.PICKLED_DOFN_INFO
    fn = pickler.loads(payload.do_fn.payload)[0]
    fn.setup()
    try:
        for output in fn.process(None) or ():
            print(output)
    finally:
        fn.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
