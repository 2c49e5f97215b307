package eventbus

// LiveGoroutines returns how many delivery goroutines of b are running.
func LiveGoroutines(b *Bus) int64 { return b.live.Load() }
