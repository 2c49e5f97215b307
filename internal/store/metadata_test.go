package store

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// AppendJSON writes the bytes json.Marshal writes, for metadata with every
// field set or left out, and strings that need escaping.
func TestMetadataAppendJSON(t *testing.T) {
	t.Parallel()
	texts := []string{"", "worker-1", `quote " and \ backslash`, "line\nbreak\ttab\rreturn\bback\fform",
		"\x00\x01\x1f control", "<html> & more", "é ü ß 日本 🙂", "\u2028 and \u2029", "bad \xff\xfe utf-8", "trail \xe2\x82"}
	zone := time.FixedZone("X", 5*3600+30*60)
	times := []time.Time{{}, time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC),
		time.Date(2026, 11, 28, 1, 2, 3, 123456789, time.UTC), time.Date(1999, 1, 2, 3, 4, 5, 1000, zone)}
	ints := []int64{0, 1, -3, 1 << 53, -(1 << 62)}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) int { return rng.IntN(n) }
	var buf []byte
	for i := range 5000 {
		m := Metadata{
			Reason: texts[pick(len(texts))], Actor: texts[pick(len(texts))], Attempt: int(ints[pick(len(ints))]),
			RetryLimit: int(ints[pick(len(ints))]), Error: texts[pick(len(texts))], ErrorClass: texts[pick(len(texts))],
			Worker: texts[pick(len(texts))], LeaseToken: ints[pick(len(ints))], LeaseExpiresAt: times[pick(len(times))],
			DurationMS: ints[pick(len(ints))], NextAttemptAt: times[pick(len(times))], Permanent: pick(2) == 1,
			StepCount: int(ints[pick(len(ints))]),
		}
		switch pick(3) {
		case 1:
			m.FailedSteps = []string{}
		case 2:
			m.FailedSteps = []string{texts[pick(len(texts))], texts[pick(len(texts))]}
		}
		if i%7 == 0 {
			m = Metadata{} // every field left out: {}
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.AppendJSON(buf[:0])
		if err != nil {
			t.Fatalf("AppendJSON(%+v): %v", m, err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON(%+v)\n got %s\nwant %s", m, got, want)
		}
		buf = got
	}
	for _, y := range []int{-1, 10000} {
		m := Metadata{NextAttemptAt: time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)}
		if _, err := json.Marshal(m); err == nil {
			t.Fatalf("json.Marshal accepts the year %d", y)
		}
		if _, err := m.AppendJSON(nil); err == nil {
			t.Errorf("AppendJSON accepts the year %d, which json.Marshal refuses", y)
		}
	}
}

func BenchmarkMetadataJSON(b *testing.B) {
	m := Metadata{Attempt: 1, RetryLimit: 3, Worker: "host/1234/b4dc1b95/4026531836", LeaseToken: 3548445861165771,
		LeaseExpiresAt: time.Date(2026, 11, 28, 1, 15, 43, 280230362, time.UTC)}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = m.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
