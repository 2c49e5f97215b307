package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// pgx encodes the elements of a []string, a []*string, a []time.Time, a
// []*time.Time or a []int64 parameter through an interface value each, and
// making that value allocates: a boxed string, a pointer followed by
// reflection, a wrapped time, a boxed integer. A completion sends three log
// entries and a handful of values per step in such arrays, which made
// about 40 of the 180 allocations of a one-step task's work phase.
//
// pgArray hands pgx each element as a pointer into the slice instead (an
// interface value that allocates nothing), and pgx encodes it through the
// pgtype value's own valuer: the same bytes on the wire, one allocation for
// the whole array.

// pgArray is a one-dimensional array parameter of pgtype values (Text,
// Int4, Int8, Timestamptz); an element that is not Valid is NULL, and a nil
// pgArray is a NULL array.
type pgArray[T any] []T

// Dimensions implements pgtype.ArrayGetter.
func (a pgArray[T]) Dimensions() []pgtype.ArrayDimension {
	if a == nil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

// Index implements pgtype.ArrayGetter: the element as a pointer, which an
// interface holds without allocating.
func (a pgArray[T]) Index(i int) any { return &a[i] }

// registerArrays tells a connection's type map the PostgreSQL types of the
// store's arrays. pgx finds the type of a parameter from the statement's
// description, except when the connection does not describe statements
// (default_query_exec_mode exec or simple_protocol, behind a pooler in
// transaction mode): it then looks the Go type up in this map, and an array
// type it does not know cannot be encoded.
func registerArrays(m *pgtype.Map) {
	m.RegisterDefaultPgType(pgArray[pgtype.Text]{}, "_text")
	m.RegisterDefaultPgType(pgArray[pgtype.Timestamptz]{}, "_timestamptz")
	m.RegisterDefaultPgType(pgArray[pgtype.Int8]{}, "_int8")
	m.RegisterDefaultPgType(pgArray[pgtype.Int4]{}, "_int4")
}

// IndexType implements pgtype.ArrayGetter.
func (a pgArray[T]) IndexType() any { return new(T) }

// arrayOf is vs converted element by element; a nil slice is a NULL array.
func arrayOf[E, T any](vs []E, conv func(E) T) pgArray[T] {
	if vs == nil {
		return nil
	}
	out := make(pgArray[T], len(vs))
	for i, v := range vs {
		out[i] = conv(v)
	}
	return out
}

// text is s as a text value; nullText is "" as NULL, s otherwise.
func text(s string) pgtype.Text     { return pgtype.Text{String: s, Valid: true} }
func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// textPtr is *p as a text value, NULL for a nil pointer.
func textPtr(p *string) pgtype.Text {
	if p == nil {
		return pgtype.Text{}
	}
	return text(*p)
}

// timestamptz is t as a timestamptz value; timestamptzPtr is NULL for a nil
// pointer.
func timestamptz(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }
func timestamptzPtr(p *time.Time) pgtype.Timestamptz {
	if p == nil {
		return pgtype.Timestamptz{}
	}
	return timestamptz(*p)
}

func int8Value(v int64) pgtype.Int8 { return pgtype.Int8{Int64: v, Valid: true} }

// texts is ss as a text[] parameter; nullTexts makes its empty strings NULL
// and textPtrs its nil pointers.
func texts(ss []string) pgArray[pgtype.Text]     { return arrayOf(ss, text) }
func nullTexts(ss []string) pgArray[pgtype.Text] { return arrayOf(ss, nullText) }
func textPtrs(ps []*string) pgArray[pgtype.Text] { return arrayOf(ps, textPtr) }

// times is ts as a timestamptz[] parameter; timePtrs makes its nil
// pointers NULL.
func times(ts []time.Time) pgArray[pgtype.Timestamptz]     { return arrayOf(ts, timestamptz) }
func timePtrs(ps []*time.Time) pgArray[pgtype.Timestamptz] { return arrayOf(ps, timestamptzPtr) }

// int8s is vs as a bigint[] parameter.
func int8s(vs []int64) pgArray[pgtype.Int8] { return arrayOf(vs, int8Value) }
