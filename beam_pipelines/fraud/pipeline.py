"""The fraud job: order events -> per-user detection -> ``fraud_alerts``.

Streaming (Pub/Sub):

    orders -> Key by user -> Detect fraud patterns (state + event-time timers) -> alerts

Batch (files):

    order batches -> Order signals per user (collect each batch's, merge per user) -> Detect fraud patterns -> alerts

Both run the same ``FraudDetector.evaluate`` (fraud/rules.py) over each user's events in
event-time order; the tests check that they raise the same alerts.

``DetectFraud`` keeps, per user, the events waiting for the watermark (a bag of
``OrderSignal``s, the few fields the rules read) and the rules' ``UserFraudState``. An
event-time timer fires when the watermark passes the earliest waiting event: the events up
to that time are then complete, so they are evaluated in event-time order, whatever order
they arrived in, and the result is the user's state from then on. The timer is then set
to the next waiting event or to when the user's state expires; at expiry the state is
cleared, so memory is bounded by the users active within the rules' windows.

Alerts do not wait for the watermark. Each arriving event is also evaluated at once, on a
copy of the state, with every event of the user still waiting (sorted), and an alert that
gives is raised then: a fraud alert reaches its webhook within a second of the order instead
of after the watermark's lag. Each alert id is raised once: when the watermark's
evaluation reaches an alert already raised on arrival, it counts it as ``confirmed`` and does
not raise it again. Only an event arriving out of order, before an earlier one of the same
user, can make the two differ; the watermark's evaluation then raises what it finds, and
an alert raised on arrival that it does not find is counted ``unconfirmed`` (and logged): it
was delivered, and the watermark's alerts are the ones batch gives.

An event older than what a user's detector has already evaluated arrived after the
watermark passed it: it is dead-lettered with reason ``late`` (only statuses a rule reads;
the others are counted and ignored). (After a user's state has
expired nothing is remembered; a later straggler is then evaluated on its own.)

On a bounded input every user's events are known once the input is read, so the batch form
collects them with a CombineFn (partial lists per batch, merged per user; common/combine.py)
and evaluates them once: on the local runner, per-key state and timers cost about 100 us per event
(docs/pipelines.md, "Performance").
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder, TupleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.common.coders import LayoutCoder
from beam_pipelines.common.combine import CombineBatchesPerKey
from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.parse import DEAD_LETTER, now_ms
from beam_pipelines.fraud.rules import OBSERVED_STATUSES, FraudDetector, OrderSignal, UserFraudState
from streamforge.config import FraudRules
from streamforge.schemas import get_schema
from streamforge.timeutil import format_millis, millis_to_datetime, to_millis

__all__ = ["DetectFraud", "FraudAlerts"]

_LOG = logging.getLogger(__name__)


class OrderSignalCoder(LayoutCoder):
    """fraud: the order events waiting for the watermark."""

    def fields(self, s: OrderSignal) -> list[Any]:
        return [
            s.event_id,
            s.order_id,
            s.user_id,
            s.status,
            s.at_ms,
            str(s.total_amount),
            s.currency,
            s.is_first_order,
            s.ip_country,
            s.card_fingerprint,
        ]

    def build(self, version: int, f: list[Any]) -> OrderSignal:
        return OrderSignal(f[0], f[1], f[2], f[3], f[4], Decimal(f[5]), f[6], f[7], f[8], f[9])


class UserFraudStateCoder(LayoutCoder):
    """fraud: what the rules remember about a user."""

    def fields(self, s: UserFraudState) -> list[Any]:
        return s.to_fields()

    def build(self, version: int, f: list[Any]) -> UserFraudState:
        return UserFraudState.from_fields(f)


class DetectFraud(beam.DoFn):
    """Streaming: ``(user_id, order event)`` -> fraud_alert records (timestamped at the alert's event time)."""

    WAITING = BagStateSpec("waiting", OrderSignalCoder())
    RULES_STATE = ReadModifyWriteStateSpec("rules_state", UserFraudStateCoder())
    EVALUATED = ReadModifyWriteStateSpec("evaluated_through_ms", VarIntCoder())
    TIMER_AT = ReadModifyWriteStateSpec("timer_at_ms", VarIntCoder())
    RAISED = BagStateSpec("raised_on_arrival", TupleCoder((StrUtf8Coder(), VarIntCoder())))  # (alert id, event ms)
    DUE = TimerSpec("due", TimeDomain.WATERMARK)

    def __init__(self, rules: FraudRules):
        self.rules = rules

    def setup(self) -> None:
        self.detector = FraudDetector(self.rules)
        self.schema = get_schema("order_event")
        self.events = Metrics.counter("fraud", "events")
        self.alerts = Metrics.counter("fraud", "emitted")
        self.on_arrival = Metrics.counter("fraud", "raised_on_arrival")
        self.confirmed = Metrics.counter("fraud", "confirmed")
        self.unconfirmed = Metrics.counter("fraud", "unconfirmed")
        self.late = Metrics.counter("fraud", "late")
        self.expired = Metrics.counter("fraud", "user_states_cleared")

    def process(
        self,
        element: tuple[str, dict[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        waiting=beam.DoFn.StateParam(WAITING),
        rules_state=beam.DoFn.StateParam(RULES_STATE),
        evaluated=beam.DoFn.StateParam(EVALUATED),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        raised=beam.DoFn.StateParam(RAISED),
        due=beam.DoFn.TimerParam(DUE),
    ) -> Iterable[Any]:
        event = element[1]
        self.events.inc()
        if event["status"] not in OBSERVED_STATUSES:
            return ()  # no rule reads it
        at_ms = to_millis(event["event_time"])
        through_ms = evaluated.read()
        if through_ms is not None and at_ms <= through_ms:
            self.late.inc()
            error = (
                f"order event at {format_millis(at_ms)} arrived after user {event['user_id']}'s events "
                f"up to {format_millis(through_ms)} were evaluated (the watermark had passed it)"
            )
            return [
                beam.pvalue.TaggedOutput(
                    DEAD_LETTER,
                    dead_letter(
                        "fraud",
                        "Detect fraud patterns",
                        "late",
                        error,
                        self.schema.to_json(event, validate=False),
                        received_at=millis_to_datetime(now_ms()),
                        event_id=event["event_id"],
                        event_time=event["event_time"],
                    ),
                )
            ]
        waiting.add(OrderSignal.of(event))
        scheduled = timer_at.read()
        if scheduled is None or at_ms < scheduled:
            due.set(timestamp)
            timer_at.write(at_ms)
        return self._raise_on_arrival(waiting, rules_state, raised)

    def _raise_on_arrival(self, waiting: Any, rules_state: Any, raised: Any) -> list[Any]:
        """The alerts the user's events so far give, on a copy of the state; each id once."""
        known = {alert_id for alert_id, _ in raised.read()}
        state = rules_state.read()
        state = state.copy() if state is not None else UserFraudState()
        detected_at = datetime.now(timezone.utc)
        out = []
        for alert in self.detector.evaluate(state, waiting.read()):
            if alert.alert_id in known:
                continue
            known.add(alert.alert_id)
            raised.add((alert.alert_id, alert.event_time_ms))
            self.alerts.inc()
            self.on_arrival.inc()
            out.append(TimestampedValue(alert.record(detected_at), alert.event_time_ms / 1000))
        return out

    @on_timer(DUE)
    def _evaluate(
        self,
        fired=beam.DoFn.TimestampParam,
        waiting=beam.DoFn.StateParam(WAITING),
        rules_state=beam.DoFn.StateParam(RULES_STATE),
        evaluated=beam.DoFn.StateParam(EVALUATED),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        raised=beam.DoFn.StateParam(RAISED),
        due=beam.DoFn.TimerParam(DUE),
    ) -> Iterable[Any]:
        fired_ms = fired.micros // 1000
        pending = sorted(waiting.read(), key=lambda e: (e.at_ms, e.event_id))
        ready = [e for e in pending if e.at_ms <= fired_ms]
        rest = pending[len(ready) :]
        state: UserFraudState = rules_state.read() or UserFraudState()
        early = dict(raised.read())
        detected_at = datetime.now(timezone.utc)
        found = set()
        for alert in self.detector.evaluate(state, ready):
            found.add(alert.alert_id)
            if alert.alert_id in early:
                self.confirmed.inc()
                continue
            self.alerts.inc()
            yield TimestampedValue(alert.record(detected_at), alert.event_time_ms / 1000)
        through_ms = max(fired_ms, evaluated.read() or fired_ms)
        self._settle(raised, early, found, through_ms)
        self.detector.expire(state, through_ms)
        if state.is_empty() and not rest:
            self._clear(waiting, rules_state, evaluated, timer_at, raised)
            return
        evaluated.write(through_ms)
        rules_state.write(state)
        if ready:
            waiting.clear()
            for event in rest:
                waiting.add(event)
        candidates = [rest[0].at_ms] if rest else []
        expiry = self.detector.expiry_ms(state)
        if expiry is not None:
            candidates.append(max(expiry, through_ms + 1))
        next_ms = min(candidates)
        due.set(next_ms / 1000)
        timer_at.write(next_ms)

    def _settle(self, raised: Any, early: dict[str, int], found: set[str], through_ms: int) -> None:
        """Forget the alerts raised on arrival that the evaluation has now passed; count those it did not raise."""
        settled = {alert_id for alert_id, at_ms in early.items() if at_ms <= through_ms}
        if not settled:
            return
        for alert_id in settled - found:
            self.unconfirmed.inc()
            _LOG.warning(
                "fraud alert %s was raised on arrival, but the event-time evaluation did not raise it "
                "(an earlier event of the user arrived later)",
                alert_id,
            )
        raised.clear()
        for alert_id, at_ms in early.items():
            if alert_id not in settled:
                raised.add((alert_id, at_ms))

    def _clear(self, *cells: Any) -> None:
        self.expired.inc()
        for cell in cells:
            cell.clear()


class UserSignals(beam.CombineFn):
    """Batch: the order signals of one user, collected (partial lists merge by concatenation)."""

    def create_accumulator(self) -> list[OrderSignal]:
        return []

    def add_input(self, accumulator: list[OrderSignal], signal: OrderSignal) -> list[OrderSignal]:
        accumulator.append(signal)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[OrderSignal]]) -> list[OrderSignal]:
        merged: list[OrderSignal] = []
        for accumulator in accumulators:
            merged.extend(accumulator)
        return merged

    def extract_output(self, accumulator: list[OrderSignal]) -> list[OrderSignal]:
        return accumulator


def _user_signal(event: dict[str, Any]) -> tuple[tuple[str, OrderSignal], ...]:
    """(user_id, signal) for the statuses a rule reads; nothing for the others."""
    return ((event["user_id"], OrderSignal.of(event)),) if event["status"] in OBSERVED_STATUSES else ()


class _DetectAll(beam.DoFn):
    """Batch: ``(user_id, all of the user's signals)`` -> fraud_alert records."""

    def __init__(self, rules: FraudRules):
        self.rules = rules

    def setup(self) -> None:
        self.detector = FraudDetector(self.rules)
        self.alerts = Metrics.counter("fraud", "emitted")

    def process(self, element: tuple[str, list[OrderSignal]]) -> Iterable[dict[str, Any]]:
        detected_at = datetime.now(timezone.utc)
        for alert in self.detector.evaluate(UserFraudState(), element[1]):
            self.alerts.inc()
            yield alert.record(detected_at)


class FraudAlerts(beam.PTransform):
    """Validated order events -> ``(alerts, dead_letters)``; alerts are fraud_alert records.

    Streaming: timestamped events; batch: lists of events (see common/parse.py)."""

    def __init__(self, rules: FraudRules, *, streaming: bool):
        super().__init__()
        self.rules, self.streaming = rules, streaming

    def display_data(self) -> dict[str, Any]:
        return {name: str(value) for name, value in vars(self.rules).items()}

    def expand(self, orders: beam.PCollection):
        if not self.streaming:
            alerts = (
                orders
                | "Order signals per user"
                >> CombineBatchesPerKey(_user_signal, UserSignals(), counter=("fraud", "events"))
                | "Detect fraud patterns" >> beam.ParDo(_DetectAll(self.rules))
            )
            return alerts, []
        detected = (
            orders
            | "Key by user"
            >> beam.Map(lambda event: (event["user_id"], event)).with_output_types(
                beam.typehints.Tuple[str, beam.typehints.Dict[str, Any]]
            )
            | "Detect fraud patterns" >> beam.ParDo(DetectFraud(self.rules)).with_outputs(DEAD_LETTER, main="alerts")
        )
        return detected.alerts, [detected[DEAD_LETTER]]
