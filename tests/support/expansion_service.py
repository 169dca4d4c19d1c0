"""A stand-in for Beam's Java IO expansion service, for building Kafka jobs offline.

The real service (a jar, started with Java) is fetched from Beam's Maven repository, which
these machines cannot reach. This one is a real gRPC server on 127.0.0.1 speaking Beam's
expansion protocol: it answers an expansion of Kafka IO's read the way the Java service's
answer is shaped (the requested URN and payload, one output of Kafka IO's record schema, in
a Java environment) without the Java transform's insides, and it keeps every request, so a
test can read the configuration the pipeline sent. It expands nothing else.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Optional, Sequence

import grpc
import numpy as np
from apache_beam.coders.row_coder import RowCoder
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.portability.api import (
    beam_expansion_api_pb2,
    beam_expansion_api_pb2_grpc,
    beam_runner_api_pb2,
    external_transforms_pb2,
)
from apache_beam.runners import pipeline_context
from apache_beam.transforms import environments
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints.schemas import named_tuple_to_schema

__all__ = ["JAVA_IMAGE", "KafkaHeader", "KafkaRecord", "StandInExpansionService", "read_config"]

#: The environment the Java service would name (Beam's Java SDK image of the same version).
JAVA_IMAGE = "apache/beam_java17_sdk:2.77.0"


class KafkaHeader(NamedTuple):
    key: str
    value: Optional[bytes]


class KafkaRecord(NamedTuple):
    """Kafka IO's record with metadata (KafkaIO.ByteArrayKafkaRecord in Beam's Java SDK)."""

    topic: str
    partition: np.int32
    offset: np.int64
    timestamp: np.int64
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[Sequence[KafkaHeader]]
    timestampTypeId: np.int32  # noqa: N815 - the Java field's name
    timestampTypeName: str  # noqa: N815


class _Servicer(beam_expansion_api_pb2_grpc.ExpansionServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def Expand(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
        self.requests.append(request)
        urn = request.transform.spec.urn
        if urn not in (ReadFromKafka.URN_WITH_METADATA, ReadFromKafka.URN_WITHOUT_METADATA):
            return beam_expansion_api_pb2.ExpansionResponse(
                error=f"the stand-in expands Kafka IO's read only, not {urn}"
            )
        if urn != ReadFromKafka.URN_WITH_METADATA:
            return beam_expansion_api_pb2.ExpansionResponse(error="the stand-in answers with_metadata reads only")
        namespace = request.namespace
        components = beam_runner_api_pb2.Components()
        components.CopyFrom(request.components)
        context = pipeline_context.PipelineContext(components)
        coder_id = context.coders.get_id(RowCoder(named_tuple_to_schema(KafkaRecord)))
        windowing = Windowing(GlobalWindows()).to_runner_api(context)
        built = context.to_runner_api()
        windowing_id, environment_id = f"{namespace}_global", f"{namespace}_java"
        built.windowing_strategies[windowing_id].CopyFrom(windowing)
        built.environments[environment_id].CopyFrom(
            environments.DockerEnvironment(container_image=JAVA_IMAGE).to_runner_api(context)
        )
        output_id = f"{namespace}_records"
        built.pcollections[output_id].CopyFrom(
            beam_runner_api_pb2.PCollection(
                unique_name=f"{request.transform.unique_name}.records",
                coder_id=coder_id,
                is_bounded=beam_runner_api_pb2.IsBounded.UNBOUNDED,
                windowing_strategy_id=windowing_id,
            )
        )
        transform = beam_runner_api_pb2.PTransform()
        transform.CopyFrom(request.transform)
        transform.outputs["output"] = output_id
        transform.environment_id = environment_id
        return beam_expansion_api_pb2.ExpansionResponse(components=built, transform=transform)


class StandInExpansionService:
    """``with StandInExpansionService() as service``: ``service.address`` is HOST:PORT;
    ``service.requests`` the expansion requests it answered."""

    def __init__(self) -> None:
        self._servicer = _Servicer()
        self._server: grpc.Server | None = None
        self.address = ""

    @property
    def requests(self) -> list[Any]:
        return self._servicer.requests

    def __enter__(self) -> StandInExpansionService:
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(self._servicer, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()


def read_config(request: Any) -> dict[str, Any]:
    """The ReadFromKafka configuration an expansion request carries (its schema-encoded payload)."""
    payload = external_transforms_pb2.ExternalConfigurationPayload.FromString(request.transform.spec.payload)
    return RowCoder(payload.schema).decode(payload.payload)._asdict()
