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
// Timestamptz, Int8); an element that is not Valid is NULL, and a nil
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

// IndexType implements pgtype.ArrayGetter.
func (a pgArray[T]) IndexType() any { return new(T) }

// texts is ss as a text[] parameter.
func texts(ss []string) pgArray[pgtype.Text] {
	if ss == nil {
		return nil
	}
	out := make(pgArray[pgtype.Text], len(ss))
	for i, s := range ss {
		out[i] = pgtype.Text{String: s, Valid: true}
	}
	return out
}

// nullTexts is ss as a text[] parameter whose empty strings are NULL.
func nullTexts(ss []string) pgArray[pgtype.Text] {
	if ss == nil {
		return nil
	}
	out := make(pgArray[pgtype.Text], len(ss))
	for i, s := range ss {
		out[i] = pgtype.Text{String: s, Valid: s != ""}
	}
	return out
}

// textPtrs is ps as a text[] parameter whose nil pointers are NULL.
func textPtrs(ps []*string) pgArray[pgtype.Text] {
	if ps == nil {
		return nil
	}
	out := make(pgArray[pgtype.Text], len(ps))
	for i, p := range ps {
		if p != nil {
			out[i] = pgtype.Text{String: *p, Valid: true}
		}
	}
	return out
}

// times is ts as a timestamptz[] parameter.
func times(ts []time.Time) pgArray[pgtype.Timestamptz] {
	if ts == nil {
		return nil
	}
	out := make(pgArray[pgtype.Timestamptz], len(ts))
	for i, t := range ts {
		out[i] = pgtype.Timestamptz{Time: t, Valid: true}
	}
	return out
}

// timePtrs is ps as a timestamptz[] parameter whose nil pointers are NULL.
func timePtrs(ps []*time.Time) pgArray[pgtype.Timestamptz] {
	if ps == nil {
		return nil
	}
	out := make(pgArray[pgtype.Timestamptz], len(ps))
	for i, p := range ps {
		if p != nil {
			out[i] = pgtype.Timestamptz{Time: *p, Valid: true}
		}
	}
	return out
}

// int8s is vs as a bigint[] parameter.
func int8s(vs []int64) pgArray[pgtype.Int8] {
	if vs == nil {
		return nil
	}
	out := make(pgArray[pgtype.Int8], len(vs))
	for i, v := range vs {
		out[i] = pgtype.Int8{Int64: v, Valid: true}
	}
	return out
}
