/**
 * `activeblaze/otel`: a member's metrics on OpenTelemetry. Install `@opentelemetry/api` (an optional
 * peer dependency) and the SDK of your choice, then give members the `metrics` option:
 *
 * ```ts
 * import { metrics } from "@opentelemetry/api";
 * import { openTelemetryMetrics } from "activeblaze/otel";
 * const channel = await createClusterChannel({ metrics: openTelemetryMetrics(metrics.getMeter("activeblaze")) });
 * ```
 *
 * Every name of `MEMBER_TOTALS` (from `activeblaze/diagnostics`) becomes an observable counter, of `MEMBER_LEVELS` an observable gauge,
 * of `MEMBER_EVENT_COUNTERS` a counter and of `MEMBER_HISTOGRAMS` a histogram (unit ms); every
 * measurement carries the attributes `member` and `cluster`. One instance may serve several members.
 */
import type { Counter, Histogram, Meter, Observable } from "@opentelemetry/api";
import { MEMBER_LEVELS, MEMBER_TOTALS } from "./diagnostics/member-counters.ts";
import { MEMBER_EVENT_COUNTERS, MEMBER_HISTOGRAMS, type MemberEventCounterName, type MemberHistogramName, type Metrics } from "./diagnostics/metrics.ts";

/** The `metrics` option, on an OpenTelemetry meter. */
export function openTelemetryMetrics(meter: Meter): Metrics {
  const counters = new Map<MemberEventCounterName, Counter>();
  const histograms = new Map<MemberHistogramName, Histogram>();
  // Instruments are made once, whichever member (of those sharing this instance) reports first.
  let observables: Map<string, Observable> | undefined;
  const observablesOf = (): Map<string, Observable> => {
    if (observables !== undefined) return observables;
    observables = new Map<string, Observable>();
    for (const [name, description] of Object.entries(MEMBER_TOTALS)) observables.set(name, meter.createObservableCounter(name, { description }));
    for (const [name, description] of Object.entries(MEMBER_LEVELS)) observables.set(name, meter.createObservableGauge(name, { description }));
    return observables;
  };
  return {
    observe(member) {
      const instruments = observablesOf();
      meter.addBatchObservableCallback((result) => {
        const { totals, levels } = member.read();
        for (const { name, value, attributes } of [...totals, ...levels]) {
          const instrument = instruments.get(name);
          if (instrument !== undefined) result.observe(instrument, value, attributes);
        }
      }, [...instruments.values()]);
    },
    count(name, increment, attributes) {
      let counter = counters.get(name);
      if (counter === undefined) counters.set(name, (counter = meter.createCounter(name, { description: MEMBER_EVENT_COUNTERS[name] })));
      counter.add(increment, attributes);
    },
    record(name, value, attributes) {
      let histogram = histograms.get(name);
      if (histogram === undefined) histograms.set(name, (histogram = meter.createHistogram(name, { description: MEMBER_HISTOGRAMS[name], unit: "ms" })));
      histogram.record(value, attributes);
    },
  };
}
