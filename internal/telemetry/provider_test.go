package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tasker-go/tasker"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestNewTracerProviderOff(t *testing.T) {
	const ep = "http://127.0.0.1:4318"
	for name, env := range map[string]map[string]string{
		"no variables":             {},
		"exporter but no endpoint": {"OTEL_TRACES_EXPORTER": "otlp"},
		"exporter none":            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ep},
		"exporter console":         {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": ep},
		"sdk disabled":             {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ep},
		"sdk disabled, caps":       {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ep},
	} {
		tp, err := NewTracerProvider(context.Background(), envOf(env))
		if tp != nil || err != nil {
			t.Errorf("%s: NewTracerProvider = %v, %v; want nil, nil", name, tp, err)
		}
	}
}

func TestNewTracerProviderErrors(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"grpc":           {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		"traces json":    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
		"no scheme":      {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
		"bad traces URL": {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"},
	} {
		tp, err := NewTracerProvider(context.Background(), envOf(env))
		if tp != nil || err == nil {
			t.Errorf("%s: NewTracerProvider = %v, %v; want an error", name, tp, err)
		}
	}
}

func TestTracesEndpoint(t *testing.T) {
	for _, c := range []struct{ traces, generic, want string }{
		{"", "", ""},
		{"", "http://collector:4318", "http://collector:4318/v1/traces"},
		{"", "http://collector:4318/", "http://collector:4318/v1/traces"},
		{"", "https://example.com/otlp", "https://example.com/otlp/v1/traces"},
		{"http://collector:4318/custom", "http://ignored:4318", "http://collector:4318/custom"},
		{"http://collector:4318", "", "http://collector:4318"},
	} {
		got, err := tracesEndpoint(c.traces, c.generic)
		if err != nil || got != c.want {
			t.Errorf("tracesEndpoint(%q, %q) = %q, %v; want %q", c.traces, c.generic, got, err, c.want)
		}
	}
}

func TestOTLPExporterSelected(t *testing.T) {
	for v, want := range map[string]bool{"": true, "otlp": true, "OTLP": true, "console, otlp": true, "none": false, "zipkin": false} {
		if got := otlpExporterSelected(v); got != want {
			t.Errorf("otlpExporterSelected(%q) = %v, want %v", v, got, want)
		}
	}
}

// With an endpoint the provider posts OTLP/HTTP to <endpoint>/v1/traces,
// with deterministic ids and the service name from the environment.
func TestNewTracerProviderExports(t *testing.T) {
	var (
		mu       sync.Mutex
		requests []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()

	for name, tc := range map[string]struct {
		env     map[string]string
		service string
	}{
		"default service name": {map[string]string{}, DefaultServiceName},
		"OTEL_SERVICE_NAME":    {map[string]string{"OTEL_SERVICE_NAME": "billing"}, "billing"},
		"OTEL_RESOURCE_ATTRIBUTES": {
			map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=shipping,deployment.environment=test"}, "shipping"},
	} {
		t.Run(name, func(t *testing.T) {
			// The resource is read by the SDK from the process environment.
			t.Setenv("OTEL_SERVICE_NAME", tc.env["OTEL_SERVICE_NAME"])
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.env["OTEL_RESOURCE_ATTRIBUTES"])
			mu.Lock()
			requests = nil
			mu.Unlock()
			ctx := context.Background()
			tp, err := NewTracerProvider(ctx, envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}))
			if err != nil || tp == nil {
				t.Fatalf("NewTracerProvider = %v, %v", tp, err)
			}
			rec := tracetest.NewSpanRecorder()
			tp.RegisterSpanProcessor(rec)
			tr := NewTracer(tp, nil)
			tr.Observe(ev(tasker.EventTaskStartRequested, taskID, 0))
			tr.Observe(ev(tasker.EventTaskCompleted, taskID, time.Second))
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}

			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			if got := spans[0].SpanContext(); got.TraceID() != TaskTraceID(taskID) || got.SpanID() != TaskSpanID(taskID) {
				t.Errorf("span ids %s/%s: the provider does not use NewIDGenerator", got.TraceID(), got.SpanID())
			}
			attrs := map[string]string{}
			for _, kv := range spans[0].Resource().Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			if attrs["service.name"] != tc.service || attrs["telemetry.sdk.language"] != "go" {
				t.Errorf("resource %v, want service.name %q and the SDK's attributes", attrs, tc.service)
			}

			mu.Lock()
			defer mu.Unlock()
			if len(requests) != 1 {
				t.Fatalf("%d export requests, want 1: %q", len(requests), requests)
			}
			if r := requests[0]; !strings.HasPrefix(r, "POST /v1/traces application/x-protobuf ") ||
				!strings.Contains(r, "task shop/order") || !strings.Contains(r, tc.service) {
				t.Errorf("export request %q", r)
			}
		})
	}
}

func TestNewTracerProviderTracesEndpoint(t *testing.T) {
	paths := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case paths <- r.URL.Path:
		default:
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	tp, err := NewTracerProvider(ctx, envOf(map[string]string{
		"OTEL_TRACES_EXPORTER":               "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/collect",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:1", // the per-signal variable wins
	}))
	if err != nil || tp == nil {
		t.Fatalf("NewTracerProvider = %v, %v", tp, err)
	}
	NewTracer(tp, nil).Observe(ev(tasker.EventTaskCompleted, taskID, time.Second))
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-paths:
		if p != "/collect" {
			t.Errorf("spans posted to %s, want /collect", p)
		}
	default:
		t.Error("no spans posted")
	}
}
