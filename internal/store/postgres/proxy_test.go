package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// commitComplete is the server's CommandComplete message of a COMMIT.
var commitComplete = []byte{'C', 0, 0, 0, 11, 'C', 'O', 'M', 'M', 'I', 'T', 0}

// lossyProxy forwards connections to a PostgreSQL server. Armed, it drops
// the server's next answer that completes a COMMIT and closes both sides
// of that connection: what a network failure just after the server
// committed looks like to the client. With holdNext set, it holds the next
// such answer instead, tells held, and sends it on once release is closed:
// a commit whose answer is slow.
type lossyProxy struct {
	ln       net.Listener
	target   string
	armed    atomic.Bool
	fired    atomic.Int32
	holdNext atomic.Bool
	held     chan struct{}
	release  chan struct{}
	wg       sync.WaitGroup
}

// startLossyProxy starts a proxy to the server of rawURL and returns it
// with the URL that goes through it.
func startLossyProxy(t *testing.T, rawURL string) (*lossyProxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() == "" {
		t.Skipf("skipping: %s names no TCP host to put a proxy in front of", rawURL)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, target: target, held: make(chan struct{}, 1), release: make(chan struct{})}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *lossyProxy) serve() {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		conns.Go(func() {
			_, _ = io.Copy(server, client)
			server.Close()
		})
		conns.Go(func() {
			p.answer(client, server)
			client.Close()
			server.Close()
		})
	}
}

// answer copies the server's answers to the client until either side
// closes, or until, armed, it meets the completion of a COMMIT.
func (p *lossyProxy) answer(client, server net.Conn) {
	buf := make([]byte, 64<<10)
	var tail []byte // the end of the previous read, for a message split across reads
	for {
		n, err := server.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			if bytes.Contains(seen, commitComplete) && p.armed.CompareAndSwap(true, false) {
				p.fired.Add(1)
				return
			}
			if bytes.Contains(seen, commitComplete) && p.holdNext.CompareAndSwap(true, false) {
				p.held <- struct{}{}
				<-p.release
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
			tail = append([]byte(nil), seen[max(0, len(seen)-len(commitComplete)+1):]...)
		}
		if err != nil {
			return
		}
	}
}

// proxiedStore opens a store on a fresh schema through a lossyProxy,
// registers a template, and returns them with a function that creates a
// task of one step of it, with this context.
func proxiedStore(t *testing.T, taskContext string) (*lossyProxy, *postgres.Store, func() (*store.TaskCreateResult, error)) {
	t.Helper()
	ctx := context.Background()
	direct := pgtest.URL(t)
	schema := pgtest.Schema(t, direct)
	proxy, proxied := startLossyProxy(t, direct)
	s, err := postgres.Open(ctx, proxied, postgres.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Millisecond)
	tp, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "ns", Name: "proxied",
		Version: "1.0.0", Definition: json.RawMessage(`{}`), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return proxy, s, func() (*store.TaskCreateResult, error) {
		return s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(taskContext), Now: now,
			Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Minute}}})
	}
}
