//go:build !cgo

package sqlite

// cDriver reports that this build, made without cgo, has no C driver.
func cDriver() (sqlDriver, bool) { return sqlDriver{}, false }
