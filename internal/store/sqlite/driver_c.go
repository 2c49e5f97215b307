//go:build cgo

package sqlite

import (
	"database/sql/driver"
	"errors"

	csqlite "github.com/mattn/go-sqlite3"
)

// cDriver is SQLite's C library (github.com/mattn/go-sqlite3), in builds
// with cgo. It runs the pragmas when it opens a connection.
func cDriver() (sqlDriver, bool) {
	return sqlDriver{
		name: DriverC,
		open: func(dsn string, pragmas []string) (driver.Driver, string) {
			return &csqlite.SQLiteDriver{ConnectHook: func(c *csqlite.SQLiteConn) error {
				for _, p := range pragmas {
					if _, err := c.Exec("PRAGMA "+p, nil); err != nil {
						return err
					}
				}
				return nil
			}}, dsn
		},
		uniqueViolation: func(err error) bool {
			var se csqlite.Error
			if !errors.As(err, &se) {
				return false
			}
			return se.ExtendedCode == csqlite.ErrConstraintUnique || se.ExtendedCode == csqlite.ErrConstraintPrimaryKey
		},
	}, true
}
