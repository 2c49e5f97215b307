package store

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends m encoded as JSON to b: the bytes json.Marshal writes
// for it (the same keys in the same order, the same omissions, the same
// escapes; TestMetadataAppendJSON compares the two), without reflection or
// allocation, as a store writes one per transition.
func (m *Metadata) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	n := len(b)
	b = appendStringField(b, n, "reason", m.Reason)
	b = appendStringField(b, n, "actor", m.Actor)
	b = appendIntField(b, n, "attempt", int64(m.Attempt))
	b = appendIntField(b, n, "retry_limit", int64(m.RetryLimit))
	b = appendStringField(b, n, "error", m.Error)
	b = appendStringField(b, n, "error_class", m.ErrorClass)
	b = appendStringField(b, n, "worker", m.Worker)
	b = appendIntField(b, n, "lease_token", m.LeaseToken)
	var err error
	if b, err = appendTimeField(b, n, "lease_expires_at", m.LeaseExpiresAt); err != nil {
		return nil, err
	}
	b = appendIntField(b, n, "duration_ms", m.DurationMS)
	if b, err = appendTimeField(b, n, "next_attempt_at", m.NextAttemptAt); err != nil {
		return nil, err
	}
	if m.Permanent {
		b = append(appendKey(b, n, "permanent"), "true"...)
	}
	b = appendIntField(b, n, "step_count", int64(m.StepCount))
	if len(m.FailedSteps) > 0 {
		b = append(appendKey(b, n, "failed_steps"), '[')
		for i, s := range m.FailedSteps {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendKey appends a field's key, after a comma unless it is the first
// field of the object whose first field would start at n.
func appendKey(b []byte, n int, key string) []byte {
	if len(b) > n {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStringField(b []byte, n int, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(appendKey(b, n, key), v)
}

func appendIntField(b []byte, n int, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(appendKey(b, n, key), v, 10)
}

func appendTimeField(b []byte, n int, key string, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return b, nil
	}
	// time.Time.MarshalJSON refuses the years RFC 3339 cannot write.
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, errors.New("metadata: " + key + ": year outside of range [0,9999]")
	}
	b = append(appendKey(b, n, key), '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONString appends s as a JSON string with encoding/json's escapes:
// HTML's <, > and &, U+2028 and U+2029 as \u sequences, and invalid UTF-8
// as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
