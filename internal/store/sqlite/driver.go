package sqlite

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"

	gosqlite "modernc.org/sqlite"
	gosqlite3 "modernc.org/sqlite/lib"
)

// The store runs on one of two builds of the same SQLite (3.54): SQLite's
// own C library, compiled into the program with cgo, or its translation
// to Go, which needs no C compiler. They read and write the same files;
// the C one is the faster (a burn-down's single writer gets through about
// a quarter more tasks a second, see docs/performance.md), the Go one is
// in every build, cross-compiled and CGO_ENABLED=0 ones included.
const (
	// DriverC is SQLite's C library, compiled in with cgo. Programs built
	// with cgo (the go command's default where a C compiler is installed)
	// have it, and use it unless told otherwise.
	DriverC = "c"
	// DriverGo is SQLite translated to Go: every build has it, and uses it
	// when it was built without cgo.
	DriverGo = "go"
)

// DefaultDriver returns the driver Open uses when Options.Driver is empty:
// DriverC if this program was built with cgo, DriverGo otherwise.
func DefaultDriver() string { return Drivers()[0] }

// Drivers returns the drivers this program was built with, the default
// first.
func Drivers() []string {
	if _, ok := cDriver(); ok {
		return []string{DriverC, DriverGo}
	}
	return []string{DriverGo}
}

// sqlDriver is what the store needs of an SQLite driver.
type sqlDriver struct {
	name string
	// open returns a driver whose connections to dsn (a "file:" URI with
	// the store's DSN parameters, understood by both drivers) run pragmas
	// once opened.
	open func(dsn string, pragmas []string) (driver.Driver, string)
	// uniqueViolation reports whether err is SQLite's primary key or unique
	// constraint error.
	uniqueViolation func(err error) bool
}

// pickDriver returns the driver of that name ("" for the default).
func pickDriver(name string) (sqlDriver, error) {
	if name == "" {
		name = DefaultDriver()
	}
	switch strings.ToLower(name) {
	case DriverGo:
		return goDriver(), nil
	case DriverC:
		if d, ok := cDriver(); ok {
			return d, nil
		}
		return sqlDriver{}, errors.New(`sqlite: driver "c" is not in this program: it was built without cgo ` +
			`(CGO_ENABLED=0, or no C compiler was found); use driver "go", or build with a C compiler and CGO_ENABLED=1`)
	default:
		return sqlDriver{}, fmt.Errorf(`sqlite: unknown driver %q: want "c" (SQLite's C library, built with cgo) or "go" (SQLite in Go)`, name)
	}
}

// goDriver is SQLite translated to Go (modernc.org/sqlite). It takes the
// pragmas as DSN parameters.
func goDriver() sqlDriver {
	return sqlDriver{
		name: DriverGo,
		open: func(dsn string, pragmas []string) (driver.Driver, string) {
			for _, p := range pragmas {
				dsn += "&_pragma=" + url.QueryEscape(p)
			}
			return &gosqlite.Driver{}, dsn
		},
		uniqueViolation: func(err error) bool {
			var se *gosqlite.Error
			if !errors.As(err, &se) {
				return false
			}
			c := se.Code()
			return c == gosqlite3.SQLITE_CONSTRAINT_UNIQUE || c == gosqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		},
	}
}
