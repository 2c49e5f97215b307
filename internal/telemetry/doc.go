// Package telemetry exports Tasker's Prometheus metrics and OpenTelemetry
// traces, both derived from the events of the in-process bus (see
// docs/events.md) plus a few values read from the client at scrape time.
//
// The package holds no global state: it registers with the
// prometheus.Registerer and emits through the trace.TracerProvider it is
// given, and never calls otel.SetTracerProvider or uses the default
// Prometheus registry by itself. The root package must not import it (it
// imports the root package); the server or CLI wires it:
//
//	m, err := telemetry.NewMetrics(reg, client) // client: *tasker.Client
//	if err != nil {
//		return err
//	}
//	msub := client.Subscribe(&tasker.SubscribeOpts{Names: m.EventNames(), Buffer: 8192})
//	defer msub.Close()
//	go m.Run(ctx, msub.Events())
//
//	tp, err := telemetry.NewTracerProvider(ctx, os.Getenv)
//	if err != nil {
//		return err
//	}
//	if tp != nil { // nil: tracing is off
//		defer tp.Shutdown(context.WithoutCancel(ctx))
//		tr := telemetry.NewTracer(tp, client).WithLogger(logger)
//		tsub := client.Subscribe(&tasker.SubscribeOpts{Names: tr.EventNames(), Buffer: 8192})
//		defer tsub.Close()
//		go tr.Run(ctx, tsub.Events())
//	}
//
// A subscription drops events when its queue is full (sub.Dropped counts
// them) rather than slowing the engine down, so under a burst larger than
// the buffer some increments and spans are lost; size Buffer accordingly.
// Each process only sees the events of the changes it makes, so every
// process exports its own share: the event-fed counters of a deployment
// are the sum over its processes.
//
// # Metrics
//
// Every event-fed metric is labelled by namespace and template (the task
// name), the two duration histograms also by outcome; never by step name,
// task id, step id or worker, to keep the number of series bounded by the
// number of templates.
//
// Counters, from events:
//
//	tasker_tasks_started_total{namespace,template}      task.start_requested (creation, and again after a retry)
//	tasker_tasks_completed_total{namespace,template}    task.completed
//	tasker_tasks_failed_total{namespace,template}       task.failed
//	tasker_tasks_cancelled_total{namespace,template}    task.cancelled
//	tasker_steps_started_total{namespace,template}      step.execution_requested (one per attempt)
//	tasker_steps_completed_total{namespace,template}    step.completed
//	tasker_steps_failed_total{namespace,template}       step.failed
//	tasker_step_retries_total{namespace,template}       step.attempt_failed
//
// Histograms, from events:
//
//	tasker_step_duration_seconds{namespace,template,outcome}
//	    execution_duration_ms of step.completed (outcome "success"),
//	    step.attempt_failed ("retry") and step.failed ("failure"). Attempts
//	    that ran no handler are not observed: error classes lease_expired,
//	    handler and template.
//	tasker_task_duration_seconds{namespace,template,outcome}
//	    From the task's last task.start_requested to task.completed
//	    ("success") or task.failed ("failure"). The start is remembered per
//	    task in a map bounded to 100,000 tasks (the oldest are evicted), so
//	    a task whose start this process did not see is not observed.
//
// Read from the Source at scrape time:
//
//	tasker_ready_steps              gauge: Source.ReadyCount, the ready-queue depth of the database
//	tasker_scrape_errors_total      counter: ReadyCount errors; tasker_ready_steps is absent from a failed scrape
//	tasker_steps_in_flight          gauge: Stats().Running, handlers running in this process
//	tasker_steps_prefetched         gauge: Stats().Prefetched, claimed steps waiting for a handler slot
//	tasker_leases_rescued_total     counter: Stats().Rescued
//	tasker_results_discarded_total  counter: Stats().Stale
//	tasker_leases_lost_total        counter: Stats().LeasesLost
//	tasker_outcome_wait_seconds     histogram: Stats().OutcomeWait, from a handler's end to the
//	                                start of the completion transaction recording its outcome
//	tasker_completion_write_seconds histogram: Stats().CompletionWrite, the completion
//	                                transactions (outcomes, the claim of released steps, commit)
//
// The engine counters are this process's since it started.
//
// # Traces
//
// Tracer emits one span per task ("task <namespace>/<template>") and a
// child span per step attempt ("step <step_name>"). Since the attempts of a
// task may run in several processes, the spans are emitted after the fact,
// when the task or attempt ends, with explicit timestamps and deterministic
// ids, so that every process agrees on them without propagating any
// context:
//
//   - trace id: the 16 bytes of the task's UUID (TaskTraceID; the first 16
//     bytes of SHA-256("trace:"+id) for an id that is not a UUID);
//   - task span id: the first 8 bytes of SHA-256("task:"+taskID) (TaskSpanID);
//   - attempt span id: the first 8 bytes of SHA-256(stepID+":"+attempt)
//     (StepAttemptSpanID).
//
// The ids are handed to the SDK through NewIDGenerator, which the
// TracerProvider must use (NewTracerProvider installs it; Tracer logs a
// warning once when it is missing). Other spans of the same provider get
// random ids.
//
// An attempt's span is emitted on step.completed, step.attempt_failed and
// step.failed (from in_progress), by the process that recorded the outcome:
// it starts execution_duration_ms before the event (for a lease that
// expired, at the claim when this process saw it) and ends at the event; on
// failure its status is Error with the error message, it has the attribute
// tasker.error_class and an "exception" event. Attempts that end without an
// outcome (step.rescued, step.cancelled) have no span. The task's span is
// emitted on task.completed, task.failed (status Error) and
// task.cancelled, by the process that finalized or cancelled the task:
// from the task's StartedAt, read with the TaskReader, to the event. After
// Client.RetryTask the task ends again and its span is emitted again with
// the same id, covering the whole task.
//
// Attributes: tasker.task_id, tasker.namespace, tasker.template,
// tasker.version, tasker.state on both; tasker.step_id, tasker.step_name,
// tasker.attempt, tasker.retry_limit, tasker.worker on attempt spans;
// tasker.error_class on failures; tasker.steps_total, tasker.steps_done,
// tasker.failed_steps, tasker.reason on task spans when known.
//
// Because a step span's parent is a remote span context marked sampled,
// the default parent-based sampler keeps every attempt span; for
// consistent sampling of whole tasks use OTEL_TRACES_SAMPLER=traceidratio,
// which decides from the trace id alone.
//
// # Environment
//
// NewTracerProvider honours, through its getenv argument:
//
//	OTEL_SDK_DISABLED                   "true" turns tracing off
//	OTEL_TRACES_EXPORTER                unset or a list containing "otlp": on; "none" (or anything else): off
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  URL the spans are posted to, as is
//	OTEL_EXPORTER_OTLP_ENDPOINT         base URL; "/v1/traces" is appended
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL
//	                                    must be unset or "http/protobuf"
//
// Without an endpoint tracing is off. The SDK and the OTLP/HTTP exporter
// also read, from the process environment: OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (service.name defaults to "tasker"),
// OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY, OTEL_TRACES_SAMPLER
// and OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_SCHEDULE_DELAY,
// OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_QUEUE_SIZE,
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE, and the limits OTEL_SPAN_*_LIMIT,
// OTEL_ATTRIBUTE_*_LIMIT, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT and
// OTEL_LINK_ATTRIBUTE_COUNT_LIMIT.
package telemetry
