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

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// commitComplete is the server's CommandComplete message of a COMMIT.
var commitComplete = []byte{'C', 0, 0, 0, 11, 'C', 'O', 'M', 'M', 'I', 'T', 0}

// lossyProxy forwards connections to a PostgreSQL server. Armed, it drops
// the server's next answer that completes a COMMIT and closes both sides
// of that connection: what a network failure just after the server
// committed looks like to the client.
type lossyProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	fired  atomic.Int32
	wg     sync.WaitGroup
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
	p := &lossyProxy{ln: ln, target: target}
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

// A commit whose answer is lost after the server committed is looked up
// by the store (txid_status) and reported as the success it was: a claim
// returns the steps it leased, instead of an error that would leave them
// leased to nobody until the lease expires, and a creation returns its
// task, instead of an error whose retry would create a second one.
func TestLostCommitAnswerIsResolved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct := pgtest.URL(t)
	schema := pgtest.Schema(t, direct)
	proxy, proxied := startLossyProxy(t, direct)
	s, err := postgres.Open(ctx, proxied, postgres.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	tp, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "ns", Name: "lost",
		Version: "1.0.0", Definition: json.RawMessage(`{}`), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	create := func() (*store.TaskCreateResult, error) {
		return s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(`{"n":1}`), Now: now,
			Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Minute}}})
	}
	if _, err := create(); err != nil {
		t.Fatal(err)
	}

	proxy.armed.Store(true)
	res, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w1", LeaseToken: 77, LeaseTTL: time.Minute, Limit: 1, Now: now})
	if n := proxy.fired.Load(); n != 1 {
		t.Fatalf("the proxy dropped %d answers, want 1", n)
	}
	if err != nil {
		t.Fatalf("claim whose commit answer was lost: %v", err)
	}
	if len(res.Steps) != 1 || string(res.Steps[0].Context) != `{"n":1}` {
		t.Fatalf("claimed %+v, want the task's one step with its context", res.Steps)
	}
	// The cursors of the claim's log entries came with the lost answer;
	// the store reads them back.
	history, err := s.EventList(ctx, &store.EventListParams{TaskID: res.Steps[0].Step.TaskID})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) == 0 || len(history) < len(res.Events) {
		t.Fatalf("the claim reported %d events, the log holds %d", len(res.Events), len(history))
	}
	tail := history[len(history)-len(res.Events):]
	for i, e := range res.Events {
		if e.Cursor == 0 || e.Cursor != tail[i].Cursor || e.Name != tail[i].Name {
			t.Fatalf("event %d of the claim: %s at cursor %d; the log has %s at %d", i, e.Name, e.Cursor, tail[i].Name, tail[i].Cursor)
		}
	}
	st, err := s.StepGet(ctx, res.Steps[0].Step.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != lifecycle.StepInProgress || st.LeaseToken != 77 || st.LeaseOwner != "w1" {
		t.Fatalf("the claimed step is %s, leased to %q with token %d; want in_progress, w1, 77", st.State, st.LeaseOwner, st.LeaseToken)
	}

	proxy.armed.Store(true)
	created, err := create()
	if n := proxy.fired.Load(); n != 2 {
		t.Fatalf("the proxy dropped %d answers, want 2", n)
	}
	if err != nil {
		t.Fatalf("creation whose commit answer was lost: %v", err)
	}
	for _, e := range created.Events {
		if e.Cursor == 0 {
			t.Fatalf("event %s of the creation has no cursor", e.Name)
		}
	}
	got, err := s.TaskGet(ctx, created.Task.ID)
	if err != nil {
		t.Fatalf("the created task: %v", err)
	}
	if got.StepsTotal != 1 {
		t.Fatalf("the created task has %d steps, want 1", got.StepsTotal)
	}
	tasks, err := s.TaskList(ctx, &store.TaskListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%d tasks stored, want 2", len(tasks))
	}
}
