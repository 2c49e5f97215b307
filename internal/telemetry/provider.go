package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// DefaultServiceName is the service.name of the spans when neither
// OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES sets one.
const DefaultServiceName = "tasker"

// NewTracerProvider returns a TracerProvider exporting spans with OTLP over
// HTTP (protobuf) through a batch span processor, configured by the
// standard OTEL_* environment variables, or nil, nil when tracing is off.
// getenv reads the environment (nil means os.Getenv).
//
// Tracing is on when OTEL_SDK_DISABLED is not "true", OTEL_TRACES_EXPORTER
// is unset or lists "otlp", and an endpoint is set:
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (to which "/v1/traces" is appended). An
// OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL other than "http/protobuf" is an
// error, as is an endpoint that is not an http or https URL.
//
// The provider uses NewIDGenerator, so it is the one to give NewTracer. It
// is not installed globally: the caller decides (otel.SetTracerProvider),
// and must call its Shutdown to flush the spans still queued.
//
// Besides the variables above, read through getenv, the OpenTelemetry SDK
// and the exporter read their own variables from the process environment:
// OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (the resource); OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG; OTEL_BSP_* (the batch span processor);
// OTEL_SPAN_*_LIMIT, OTEL_ATTRIBUTE_*_LIMIT and the other limits.
func NewTracerProvider(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	env := func(k string) string { return strings.TrimSpace(getenv(k)) }
	if strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	if !otlpExporterSelected(env("OTEL_TRACES_EXPORTER")) {
		return nil, nil
	}
	endpoint, err := tracesEndpoint(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if err != nil || endpoint == "" {
		return nil, err
	}
	protocol := env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" {
		return nil, fmt.Errorf("telemetry: OTLP protocol %q is not supported: only http/protobuf is", protocol)
	}

	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	res, err := newResource(ctx)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(NewIDGenerator()),
	), nil
}

// otlpExporterSelected reports whether OTEL_TRACES_EXPORTER (a
// comma-separated list) selects the OTLP exporter; unset means otlp.
// "none", and exporters other than otlp (console, zipkin...), which are not
// supported, select nothing.
func otlpExporterSelected(v string) bool {
	if v == "" {
		return true
	}
	for name := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(name), "otlp") {
			return true
		}
	}
	return false
}

// tracesEndpoint returns the URL spans are sent to: the traces endpoint as
// is, or the generic endpoint with "/v1/traces" appended to its path; ""
// when neither is set.
func tracesEndpoint(traces, generic string) (string, error) {
	v, name := traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if v == "" {
		v, name = generic, "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("telemetry: %s=%q is not an http or https URL", name, v)
	}
	if traces == "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		u.RawPath = ""
	}
	return u.String(), nil
}

// newResource describes this process: the SDK's defaults, service.name
// "tasker", and what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES set
// (which wins).
func newResource(ctx context.Context) (*resource.Resource, error) {
	own, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	res, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}
