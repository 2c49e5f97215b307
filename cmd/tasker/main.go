// Command tasker runs declarative workflows. See "tasker --help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasker-go/tasker/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second Ctrl-C
	// kills the process at once instead of waiting for a clean stop.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
