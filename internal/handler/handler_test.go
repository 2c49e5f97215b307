package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want Classification
	}{
		{"plain", base, Classification{}},
		{"permanent", Permanent(base), Classification{Permanent: true}},
		{"wrapped permanent", fmt.Errorf("charge: %w", Permanent(base)), Classification{Permanent: true}},
		{"retry after", RetryAfter(3*time.Second, base), Classification{Delay: 3 * time.Second, Requested: true}},
		{"wrapped retry after", fmt.Errorf("x: %w", RetryAfter(time.Second, base)), Classification{Delay: time.Second, Requested: true}},
		{"permanent wins", Permanent(RetryAfter(time.Second, base)), Classification{Permanent: true}},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if !errors.Is(Permanent(base), base) || !errors.Is(RetryAfter(0, base), base) {
		t.Error("markers must unwrap to the cause")
	}
	if Permanent(nil).Error() == "" || RetryAfter(time.Second, nil).Error() == "" {
		t.Error("nil causes still need a message")
	}
}

type recorder struct{ names []string }

func (r *recorder) Publish(name string, _ map[string]any) error {
	r.names = append(r.names, name)
	return nil
}

func TestInputDecodeAndPublish(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	in := Input{
		StepName:     "ship",
		Context:      json.RawMessage(`{"order":7}`),
		Dependencies: map[string]json.RawMessage{"pack": json.RawMessage(`{"boxes":2}`)},
	}.WithPublisher(rec)
	var ctxv struct{ Order int }
	if err := in.DecodeContext(&ctxv); err != nil || ctxv.Order != 7 {
		t.Fatalf("DecodeContext = %v, %+v", err, ctxv)
	}
	var cfg map[string]any
	if err := in.DecodeConfig(&cfg); err != nil || cfg != nil {
		t.Fatalf("DecodeConfig of empty config = %v, %v; want nil map", err, cfg)
	}
	var dep struct{ Boxes int }
	if err := in.DecodeDependency("pack", &dep); err != nil || dep.Boxes != 2 {
		t.Fatalf("DecodeDependency = %v, %+v", err, dep)
	}
	if err := in.DecodeDependency("weigh", &dep); err == nil {
		t.Fatal("DecodeDependency of a non-dependency succeeded")
	}
	if err := in.Publish("order.shipped", nil); err != nil || len(rec.names) != 1 {
		t.Fatalf("Publish = %v, %v", err, rec.names)
	}
	var h Handler = Func(func(ctx context.Context, in *Input) (any, error) { return in.StepName, nil })
	if got, _ := h.Handle(context.Background(), in); got != "ship" {
		t.Fatalf("Func.Handle = %v", got)
	}
	if err := (&Input{}).Publish("a.b", nil); err == nil {
		t.Fatal("Publish without publisher succeeded")
	}
}
