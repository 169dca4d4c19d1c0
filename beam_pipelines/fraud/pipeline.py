"""The fraud job: order events -> per-user stateful detection -> ``fraud_alerts``.

    orders -> Key by user -> Detect fraud patterns (state + event-time timers) -> alerts

``DetectFraud`` keeps, per user, the events waiting for the watermark (a bag) and the
rules' ``UserFraudState`` (fraud/rules.py). An event-time timer fires when the watermark
passes the earliest waiting event: the events up to that time are then complete, so they
are evaluated in event-time order, whatever order they arrived in. The timer is then set
to the next waiting event or to when the user's state expires; at expiry the state is
cleared, so memory is bounded by the users active within the rules' windows.

An event older than what a user's detector has already evaluated arrived after the
watermark passed it: it is dead-lettered with reason ``late``. (After a user's state has
expired nothing is remembered; a later straggler is then evaluated on its own.)

On a bounded input the watermark jumps past every event once the input is read, so the
first timer of each user evaluates all of the user's events and clears the state.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.parse import DEAD_LETTER, now_ms
from beam_pipelines.fraud.rules import FraudDetector, UserFraudState
from streamforge.config import FraudRules
from streamforge.schemas import get_schema
from streamforge.timeutil import format_millis, millis_to_datetime, to_millis

__all__ = ["DetectFraud", "FraudAlerts"]


def _order_key(event: dict[str, Any]) -> tuple[int, str]:
    return to_millis(event["event_time"]), event["event_id"]


class DetectFraud(beam.DoFn):
    """``(user_id, order event)`` -> fraud_alert records (timestamped at the alert's event time)."""

    WAITING = BagStateSpec("waiting", PickleCoder())
    RULES_STATE = ReadModifyWriteStateSpec("rules_state", PickleCoder())
    EVALUATED = ReadModifyWriteStateSpec("evaluated_through_ms", VarIntCoder())
    TIMER_AT = ReadModifyWriteStateSpec("timer_at_ms", VarIntCoder())
    DUE = TimerSpec("due", TimeDomain.WATERMARK)

    def __init__(self, rules: FraudRules, *, bounded: bool):
        self.rules, self.bounded = rules, bounded

    def setup(self) -> None:
        self.detector = FraudDetector(self.rules)
        self.schema = get_schema("order_event")
        self.events = Metrics.counter("fraud", "events")
        self.alerts = Metrics.counter("fraud", "emitted")
        self.late = Metrics.counter("fraud", "late")
        self.expired = Metrics.counter("fraud", "user_states_cleared")

    def process(self, element: tuple[str, dict[str, Any]], timestamp=beam.DoFn.TimestampParam,
                waiting=beam.DoFn.StateParam(WAITING), evaluated=beam.DoFn.StateParam(EVALUATED),
                timer_at=beam.DoFn.StateParam(TIMER_AT), due=beam.DoFn.TimerParam(DUE)) -> Iterable[Any]:
        event = element[1]
        self.events.inc()
        at_ms = to_millis(event["event_time"])
        through_ms = evaluated.read()
        if through_ms is not None and at_ms <= through_ms:
            self.late.inc()
            error = (f"order event at {format_millis(at_ms)} arrived after user {event['user_id']}'s events "
                     f"up to {format_millis(through_ms)} were evaluated (the watermark had passed it)")
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                "fraud", "Detect fraud patterns", "late", error, self.schema.to_json(event, validate=False),
                received_at=millis_to_datetime(now_ms()), event_id=event["event_id"], event_time=event["event_time"]))
            return
        waiting.add(event)
        scheduled = timer_at.read()
        if scheduled is None or at_ms < scheduled:
            due.set(timestamp)
            timer_at.write(at_ms)

    @on_timer(DUE)
    def _evaluate(self, fired=beam.DoFn.TimestampParam, waiting=beam.DoFn.StateParam(WAITING),
                  rules_state=beam.DoFn.StateParam(RULES_STATE), evaluated=beam.DoFn.StateParam(EVALUATED),
                  timer_at=beam.DoFn.StateParam(TIMER_AT), due=beam.DoFn.TimerParam(DUE)) -> Iterable[Any]:
        fired_ms = fired.micros // 1000
        pending = sorted(waiting.read(), key=_order_key)
        if self.bounded:
            ready, rest = pending, []
        else:
            ready = [e for e in pending if to_millis(e["event_time"]) <= fired_ms]
            rest = pending[len(ready):]
        state: UserFraudState = rules_state.read() or UserFraudState()
        detected_at = datetime.now(timezone.utc)
        for event in ready:
            at_ms = to_millis(event["event_time"])
            self.detector.expire(state, at_ms)
            for alert in self.detector.observe(state, event):
                self.alerts.inc()
                yield TimestampedValue(alert.record(detected_at), alert.event_time_ms / 1000)
        if self.bounded:  # nothing can follow: forget the user now instead of at expiry
            self._clear(waiting, rules_state, evaluated, timer_at)
            return
        through_ms = max(fired_ms, evaluated.read() or fired_ms)
        self.detector.expire(state, through_ms)
        if state.is_empty() and not rest:
            self._clear(waiting, rules_state, evaluated, timer_at)
            return
        evaluated.write(through_ms)
        rules_state.write(state)
        if ready:
            waiting.clear()
            for event in rest:
                waiting.add(event)
        candidates = [to_millis(rest[0]["event_time"])] if rest else []
        expiry = self.detector.expiry_ms(state)
        if expiry is not None:
            candidates.append(max(expiry, through_ms + 1))
        next_ms = min(candidates)
        due.set(next_ms / 1000)
        timer_at.write(next_ms)

    def _clear(self, *cells: Any) -> None:
        self.expired.inc()
        for cell in cells:
            cell.clear()


class FraudAlerts(beam.PTransform):
    """Validated order events (timestamped) -> ``(alerts, dead_letters)``; alerts are fraud_alert records."""

    def __init__(self, rules: FraudRules, *, bounded: bool):
        super().__init__()
        self.rules, self.bounded = rules, bounded

    def expand(self, orders: beam.PCollection):
        detected = (
            orders
            | "Key by user" >> beam.Map(lambda event: (event["user_id"], event)).with_output_types(
                beam.typehints.Tuple[str, beam.typehints.Dict[str, Any]])
            | "Detect fraud patterns" >> beam.ParDo(DetectFraud(self.rules, bounded=self.bounded))
            .with_outputs(DEAD_LETTER, main="alerts")
        )
        return detected.alerts, [detected[DEAD_LETTER]]
