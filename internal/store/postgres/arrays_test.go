package postgres

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

func strPtr(s string) *string { return &s }

// The store's array parameters put the same bytes on the wire as the Go
// slices they replace.
func TestArraysEncodeAsTheirSlices(t *testing.T) {
	m := pgtype.NewMap()
	t1 := time.Date(2026, 11, 28, 7, 20, 0, 123456000, time.UTC)
	t2 := t1.Add(time.Hour)
	cases := []struct {
		name      string
		oid       uint32
		ours, std any
	}{
		{"texts", pgtype.TextArrayOID, texts([]string{"a", "", `quote " and \ backslash`, "ünï", "{,}"}),
			[]string{"a", "", `quote " and \ backslash`, "ünï", "{,}"}},
		{"texts empty", pgtype.TextArrayOID, texts([]string{}), []string{}},
		{"nullTexts", pgtype.TextArrayOID, nullTexts([]string{"a", "", "b"}), []*string{strPtr("a"), nil, strPtr("b")}},
		{"textPtrs", pgtype.TextArrayOID, textPtrs([]*string{nil, strPtr("x"), strPtr("")}), []*string{nil, strPtr("x"), strPtr("")}},
		{"times", pgtype.TimestamptzArrayOID, times([]time.Time{t1, t2}), []time.Time{t1, t2}},
		{"timePtrs", pgtype.TimestamptzArrayOID, timePtrs([]*time.Time{&t1, nil, &t2}), []*time.Time{&t1, nil, &t2}},
		{"int8s", pgtype.Int8ArrayOID, int8s([]int64{0, -1, 1 << 62}), []int64{0, -1, 1 << 62}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.std, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.ours, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoded\n%x\nwant (as the slice)\n%x", got, want)
			}
		})
	}
	// A nil array is NULL, as a nil slice is.
	got, err := m.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, texts(nil), nil)
	if err != nil || got != nil {
		t.Errorf("nil array: %x, %v; want NULL", got, err)
	}
}

// Encoding an array costs a few allocations, not one or two per element as
// the slices did.
func TestArraysEncodeWithoutAllocatingPerElement(t *testing.T) {
	m := pgtype.NewMap()
	const n = 200
	ss := make([]string, n)
	ps := make([]*string, n)
	ts := make([]time.Time, n)
	for i := range n {
		ss[i] = "0193f2a0-1c2b-7d3e-8f40-5a6b7c8d9e0f"
		ps[i] = &ss[i]
		ts[i] = time.Date(2026, 11, 28, 7, 0, i, 0, time.UTC)
	}
	buf := make([]byte, 0, 64<<10)
	encode := func(oid uint32, v any) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, err := m.Encode(oid, pgtype.BinaryFormatCode, v, buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, c := range []struct {
		name string
		oid  uint32
		ours any
		std  any
	}{
		{"text", pgtype.TextArrayOID, texts(ss), ss},
		{"nullable text", pgtype.TextArrayOID, textPtrs(ps), ps},
		{"timestamptz", pgtype.TimestamptzArrayOID, times(ts), ts},
	} {
		ours, std := encode(c.oid, c.ours), encode(c.oid, c.std)
		t.Logf("%s[%d]: %.0f allocations, %.0f as a slice", c.name, n, ours, std)
		if ours > 5 {
			t.Errorf("%s[%d]: %.0f allocations per encoding, want a few", c.name, n, ours)
		}
		if std < n {
			t.Logf("%s: the slice allocated less than once per element (%.0f); pgx may have changed", c.name, std)
		}
	}
}

// The arrays reach PostgreSQL as the values they hold, NULLs included.
func TestArraysRoundTrip(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	t1 := time.Date(2026, 11, 28, 7, 20, 0, 123456000, time.UTC)
	var (
		text, nulls, ints string
		stamps, null      bool
	)
	err = conn.QueryRow(ctx, `SELECT $1::text[]::text, $2::text[]::text, ($3::timestamptz[])[1] = $4::timestamptz
			AND ($3::timestamptz[])[2] IS NULL, $5::bigint[]::text, $6::text[] IS NULL`,
		texts([]string{"a", "", `q"\`}), nullTexts([]string{"x", ""}), timePtrs([]*time.Time{&t1, nil}), t1,
		int8s([]int64{-1, 1 << 62}), texts(nil)).Scan(&text, &nulls, &stamps, &ints, &null)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{a,"","q\"\\"}`; text != want {
		t.Errorf("text[] = %s, want %s", text, want)
	}
	if want := `{x,NULL}`; nulls != want {
		t.Errorf("nullable text[] = %s, want %s", nulls, want)
	}
	if !stamps {
		t.Errorf("timestamptz[]: the time or the NULL did not arrive")
	}
	if want := `{-1,4611686018427387904}`; ints != want {
		t.Errorf("bigint[] = %s, want %s", ints, want)
	}
	if !null {
		t.Errorf("a nil array is not NULL")
	}
}
