// Package webhook delivers stored events to the webhook subscriptions
// declared by templates and by a server's subscriptions file.
//
// Delivery is driven by the durable event log and is at-least-once. Each
// subscription has a cursor in the log: a fan-out pass reads the matching
// events after it and, in one transaction, creates a delivery per event and
// moves the cursor. A delivery pass claims due deliveries under a lease and
// POSTs them, signed with HMAC-SHA256; a failure is retried with backoff
// until the subscription's retry limit, then the delivery is failed (an
// operator can send it again). Every process that runs an engine takes
// part; the cursor's compare-and-set and the claims keep them apart, and a
// crash at any point leaves a delivery pending, never lost.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/internal/clock"
	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/netguard"
	"github.com/tasker-go/tasker/internal/secret"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
)

// Headers sent with every delivery.
const (
	HeaderDelivery  = "Tasker-Delivery"
	HeaderEvent     = "Tasker-Event"
	HeaderAttempt   = "Tasker-Attempt"
	HeaderSignature = "Tasker-Signature"
)

// Store is what the deliverer needs from the store.
type Store interface {
	SubscriptionSync(ctx context.Context, p *store.SubscriptionSyncParams) ([]*store.Subscription, error)
	SubscriptionList(ctx context.Context, p *store.SubscriptionListParams) ([]*store.Subscription, error)
	SubscriptionAdvance(ctx context.Context, p *store.SubscriptionAdvanceParams) error
	DeliveryClaim(ctx context.Context, p *store.DeliveryClaimParams) ([]*store.Delivery, error)
	DeliveryFinish(ctx context.Context, p *store.DeliveryFinishParams) error
	DeliveryDeleteDelivered(ctx context.Context, before time.Time) (int, error)
	EventList(ctx context.Context, p *store.EventListParams) ([]*store.Event, error)
	EventCursorAt(ctx context.Context, t time.Time) (int64, error)
}

// Config configures a Deliverer.
type Config struct {
	Store Store
	// Secrets resolves the references in subscription secrets and headers.
	Secrets *secret.Policy
	// Guard decides which destinations deliveries may reach.
	Guard *netguard.Policy
	// PollInterval is the longest wait between passes when nothing wakes
	// the deliverer. Default 1s.
	PollInterval time.Duration
	// Timeout bounds one delivery request. Default 10s.
	Timeout time.Duration
	// Concurrency is how many deliveries are sent at once. Default 8.
	Concurrency int
	// Retention, when positive, deletes deliveries delivered longer ago.
	Retention time.Duration
	Logger    *slog.Logger
	Clock     clock.Clock
	// Rand returns a uniform number in [0, 1) for backoff jitter.
	Rand func() float64
}

// Deliverer fans events out into deliveries and sends them.
type Deliverer struct {
	cfg    Config
	client *http.Client
	wake   chan struct{}
	// freed is signalled when a send of Run ends: its slot is free.
	freed chan struct{}

	mu          sync.Mutex
	lastCleanup time.Time
	// idle records that the last pass found no active subscription, so
	// that wake-ups (every commit) cost nothing until the next timed pass.
	idle atomic.Bool
}

// fanoutBatch is how many events one fan-out step reads.
const fanoutBatch = 500

// lease is how long a claimed delivery is kept from other processes.
const lease = time.Minute

// claimTimeout bounds a claim of deliveries, which a stop does not
// interrupt.
const claimTimeout = 30 * time.Second

// New returns a deliverer.
func New(cfg Config) *Deliverer {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Secrets == nil {
		cfg.Secrets = &secret.Policy{}
	}
	return &Deliverer{cfg: cfg, client: cfg.Guard.Client(cfg.Timeout, 5), wake: make(chan struct{}, 1), freed: make(chan struct{}, 1)}
}

// Kick asks for a pass soon even while no subscription is active: a
// subscription was added or a delivery queued again.
func (d *Deliverer) Kick() {
	d.idle.Store(false)
	d.Wake()
}

// Idle reports whether the last pass found no active subscription: until
// the next timed pass (or Kick), Wake does nothing, and a caller need not
// look for reasons to call it.
func (d *Deliverer) Idle() bool { return d.idle.Load() }

// Wake asks for a pass soon: new events were committed.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run fans out and delivers until ctx is done, and returns once the sends
// in flight have ended. Its sends run beside its passes, each holding one
// of Concurrency slots: a slow receiver holds its slots, not the loop, so
// new events are fanned out and the deliveries of other subscriptions go
// out meanwhile. The end of a send claims for its slot.
func (d *Deliverer) Run(ctx context.Context) {
	slots := make(chan struct{}, d.cfg.Concurrency)
	var sending sync.WaitGroup
	defer sending.Wait()
	fanout := true
	for {
		if fanout {
			if err := d.Fanout(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.WarnContext(ctx, "webhooks: fan-out failed; trying again", slog.Any("error", err))
			}
		}
		if err := d.dispatch(ctx, slots, &sending); err != nil && ctx.Err() == nil {
			d.cfg.Logger.WarnContext(ctx, "webhooks: sending failed; trying again", slog.Any("error", err))
		}
		d.cleanup(ctx)
		var ok bool
		if ok, fanout = d.wait(ctx); !ok {
			return
		}
	}
}

// dispatch claims due deliveries for the free slots and sends each in a
// goroutine of sending that holds its slot until the send has ended.
func (d *Deliverer) dispatch(ctx context.Context, slots chan struct{}, sending *sync.WaitGroup) error {
	for ctx.Err() == nil {
		free := cap(slots) - len(slots) // only this loop takes slots
		if free == 0 {
			return nil
		}
		claimed, subs, err := d.claimDue(ctx, free)
		if err != nil || len(claimed) == 0 {
			return err
		}
		for _, del := range claimed {
			slots <- struct{}{}
			sending.Go(func() {
				defer func() {
					<-slots
					select {
					case d.freed <- struct{}{}:
					default:
					}
				}()
				d.deliver(ctx, del, subs[del.SubscriptionID])
			})
		}
		if len(claimed) < free {
			return nil
		}
	}
	return ctx.Err()
}

// wait waits for a wake-up, a freed slot of Run or the poll interval. It
// reports false when ctx ends, and whether the pass that follows fans out
// (not after a freed slot alone). With no active subscription, committed
// events have nothing to fan out to: wake-ups are ignored, and the timed
// pass still sends what is due.
func (d *Deliverer) wait(ctx context.Context) (ok, fanout bool) {
	t := time.NewTimer(d.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, false
		case <-t.C:
			return true, true
		case <-d.freed:
			return true, false
		case <-d.wake:
			if !d.idle.Load() {
				return true, true
			}
		}
	}
}

// Pass fans out every active subscription, then sends every due delivery.
func (d *Deliverer) Pass(ctx context.Context) error {
	if err := d.Fanout(ctx); err != nil {
		return err
	}
	for {
		n, err := d.DeliverDue(ctx)
		if err != nil || n < d.cfg.Concurrency {
			d.cleanup(ctx)
			return err
		}
	}
}

func (d *Deliverer) cleanup(ctx context.Context) {
	if d.cfg.Retention <= 0 {
		return
	}
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	due := now.Sub(d.lastCleanup) >= 10*time.Minute
	if due {
		d.lastCleanup = now
	}
	d.mu.Unlock()
	if !due {
		return
	}
	if n, err := d.cfg.Store.DeliveryDeleteDelivered(ctx, now.Add(-d.cfg.Retention)); err != nil {
		d.cfg.Logger.WarnContext(ctx, "webhooks: retention failed", slog.Any("error", err))
	} else if n > 0 {
		d.cfg.Logger.InfoContext(ctx, "webhooks: deleted old deliveries", slog.Int("count", n))
	}
}

// Spec decodes a stored subscription's definition.
func Spec(s *store.Subscription) (*template.Subscription, error) {
	var spec template.Subscription
	if err := json.Unmarshal(s.Spec, &spec); err != nil {
		return nil, fmt.Errorf("subscription %s: %w", s.ID, err)
	}
	return &spec, nil
}

// Fanout creates the deliveries of the events committed since each active
// subscription's cursor.
func (d *Deliverer) Fanout(ctx context.Context) error {
	subs, err := d.cfg.Store.SubscriptionList(ctx, &store.SubscriptionListParams{ActiveOnly: true})
	if err != nil {
		return err
	}
	d.idle.Store(len(subs) == 0)
	var errs []error
	for _, s := range subs {
		if err := d.fanoutOne(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Deliverer) fanoutOne(ctx context.Context, s *store.Subscription) error {
	spec, err := Spec(s)
	if err != nil {
		return err
	}
	cursor := s.Cursor
	for {
		// The log's end, read first: every event up to it is visible now
		// (cursors are assigned in commit order), so the scan below cannot
		// skip one.
		head, err := d.cfg.Store.EventCursorAt(ctx, d.cfg.Clock.Now().AddDate(100, 0, 0))
		if err != nil {
			return err
		}
		if head <= cursor {
			return nil
		}
		evs, err := d.cfg.Store.EventList(ctx, &store.EventListParams{After: cursor, Namespace: s.Namespace, TaskName: s.TaskName,
			Version: s.Version, Names: spec.Events, Limit: fanoutBatch})
		if err != nil {
			return err
		}
		to := head
		if len(evs) == fanoutBatch {
			to = evs[len(evs)-1].Cursor
		} else if len(evs) > 0 {
			to = max(to, evs[len(evs)-1].Cursor)
		}
		now := d.cfg.Clock.Now()
		ds := make([]*store.Delivery, 0, len(evs))
		for _, e := range evs {
			id := uuid.Must(uuid.NewV7()).String()
			payload, err := json.Marshal(document{DeliveryID: id, Subscription: s.Name, Event: engine.EventFromLog(e)})
			if err != nil {
				return err
			}
			ds = append(ds, &store.Delivery{ID: id, SubscriptionName: s.Name, EventCursor: e.Cursor, EventName: string(e.Name),
				TaskID: e.TaskID, Namespace: e.Namespace, Payload: payload})
		}
		err = d.cfg.Store.SubscriptionAdvance(ctx, &store.SubscriptionAdvanceParams{ID: s.ID, From: cursor, To: to, Deliveries: ds, Now: now})
		if errors.Is(err, store.ErrConflict) {
			return nil // another process got there first
		}
		if err != nil {
			return err
		}
		if len(ds) > 0 {
			d.cfg.Logger.DebugContext(ctx, "webhooks: deliveries created", slog.String("subscription", s.ID), slog.Int("count", len(ds)))
		}
		cursor = to
		if len(evs) < fanoutBatch {
			return nil
		}
	}
}

// document is the body of a delivery.
type document struct {
	DeliveryID   string `json:"delivery_id"`
	Subscription string `json:"subscription"`
	Event        any    `json:"event"`
}

// DeliverDue claims due deliveries and sends them; it returns how many it
// claimed.
func (d *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	claimed, byID, err := d.claimDue(ctx, d.cfg.Concurrency)
	if err != nil || len(claimed) == 0 {
		return len(claimed), err
	}
	var wg sync.WaitGroup
	for _, del := range claimed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.deliver(ctx, del, byID[del.SubscriptionID])
		}()
	}
	wg.Wait()
	return len(claimed), nil
}

// claimDue claims up to limit due deliveries and reads their
// subscriptions, by id. Deliveries it claimed but cannot send (their
// subscriptions unreadable) are given back.
func (d *Deliverer) claimDue(ctx context.Context, limit int) ([]*store.Delivery, map[string]*store.Subscription, error) {
	// The claim is not interrupted once sent: a claim that commits while
	// its answer is lost would hold its deliveries until the lease ends.
	// What it claims is sent, or given back if ctx has ended.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	claimed, err := d.cfg.Store.DeliveryClaim(cctx, &store.DeliveryClaimParams{Now: d.cfg.Clock.Now(), Lease: lease, Limit: limit})
	cancel()
	if err != nil || len(claimed) == 0 {
		return nil, nil, err
	}
	// Claimed deliveries must be sent or given back, even when ctx ends
	// now: read their subscriptions regardless.
	subs, err := d.cfg.Store.SubscriptionList(context.WithoutCancel(ctx), &store.SubscriptionListParams{})
	if err != nil {
		d.release(ctx, claimed, err)
		return nil, nil, err
	}
	byID := make(map[string]*store.Subscription, len(subs))
	for _, s := range subs {
		byID[s.ID] = s
	}
	return claimed, byID, nil
}

// release gives claimed deliveries back, due now.
func (d *Deliverer) release(ctx context.Context, claimed []*store.Delivery, cause error) {
	now := d.cfg.Clock.Now()
	for _, del := range claimed {
		if err := d.cfg.Store.DeliveryFinish(context.WithoutCancel(ctx), &store.DeliveryFinishParams{ID: del.ID, Attempt: del.Attempts,
			State: store.DeliveryPending, NextAttemptAt: now, LastError: "not sent: " + cause.Error(), Now: now}); err != nil &&
			!errors.Is(err, store.ErrConflict) {
			d.cfg.Logger.WarnContext(ctx, "webhooks: cannot give a delivery back; it is sent again after its lease", slog.String("delivery", del.ID),
				slog.Any("error", err))
		}
	}
}

// deliver sends one delivery and records the outcome.
func (d *Deliverer) deliver(ctx context.Context, del *store.Delivery, s *store.Subscription) {
	log := d.cfg.Logger.With(slog.String("delivery", del.ID), slog.String("subscription", del.SubscriptionID),
		slog.String("event", del.EventName), slog.Int("attempt", del.Attempts))
	var (
		status int
		retry  time.Duration
		asked  bool
		err    error
		policy = template.DefaultDeliveryRetry()
	)
	if s == nil {
		err = errors.New("the subscription no longer exists")
	} else {
		var spec *template.Subscription
		if spec, err = Spec(s); err == nil {
			policy = spec.Retry
			status, retry, asked, err = d.send(ctx, del, spec)
		}
	}
	now := d.cfg.Clock.Now()
	fin := &store.DeliveryFinishParams{ID: del.ID, Attempt: del.Attempts, LastStatus: status, Now: now, NextAttemptAt: now}
	switch {
	case ctx.Err() != nil:
		// Stopping: give the delivery back, due now, for the next process.
		fin.State, fin.LastError = store.DeliveryPending, "interrupted: the process stopped"
		if err == nil {
			fin.State = store.DeliveryDelivered
		}
	case err == nil:
		fin.State = store.DeliveryDelivered
		log.DebugContext(ctx, "webhooks: delivered", slog.Int("status", status))
	case del.Attempts >= policy.Limit:
		fin.State, fin.LastError = store.DeliveryFailed, err.Error()
		log.WarnContext(ctx, "webhooks: delivery failed; giving up", slog.Any("error", err))
	default:
		delay := policy.Delay(del.Attempts, d.cfg.Rand())
		if asked {
			delay = policy.Requested(retry)
		}
		fin.State, fin.LastError, fin.NextAttemptAt = store.DeliveryPending, err.Error(), now.Add(delay)
		log.InfoContext(ctx, "webhooks: delivery failed; retrying", slog.Any("error", err), slog.Duration("backoff", delay))
	}
	if err := d.cfg.Store.DeliveryFinish(context.WithoutCancel(ctx), fin); err != nil && !errors.Is(err, store.ErrConflict) {
		log.WarnContext(ctx, "webhooks: cannot record the outcome; the delivery will be sent again", slog.Any("error", err))
	}
}

// send POSTs one delivery: the status, a delay the receiver asked for,
// and an error unless it answered 2xx.
func (d *Deliverer) send(ctx context.Context, del *store.Delivery, spec *template.Subscription) (int, time.Duration, bool, error) {
	// Resolve the secret and headers for this attempt only.
	refs, _ := json.Marshal(map[string]any{"secret": spec.Secret, "headers": spec.Headers})
	resolved, values, err := d.cfg.Secrets.Resolve(refs)
	if err != nil {
		return 0, 0, false, err
	}
	red := secret.NewRedactor(values)
	var sec struct {
		Secret  string            `json:"secret"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(resolved, &sec); err != nil {
		return 0, 0, false, err
	}
	ts := d.cfg.Clock.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, spec.URL, bytes.NewReader(del.Payload))
	if err != nil {
		return 0, 0, false, fmt.Errorf("webhook URL: %w", err)
	}
	for k, v := range sec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tasker-webhooks")
	req.Header.Set(HeaderDelivery, del.ID)
	req.Header.Set(HeaderEvent, del.EventName)
	req.Header.Set(HeaderAttempt, strconv.Itoa(del.Attempts))
	req.Header.Set(HeaderSignature, Sign([]byte(sec.Secret), ts, del.Payload))
	where := "POST " + redactURL(req.URL)
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, 0, false, fmt.Errorf("%s: %s", where, red.String(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, false, nil
	}
	msg := fmt.Errorf("%s: status %d%s", where, resp.StatusCode, red.String(quote(body)))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
			return resp.StatusCode, time.Duration(s) * time.Second, true, msg
		}
		if t, err := http.ParseTime(resp.Header.Get("Retry-After")); err == nil {
			return resp.StatusCode, max(t.Sub(d.cfg.Clock.Now()), 0), true, msg
		}
	}
	return resp.StatusCode, 0, false, msg
}

// Sign returns the signature header value for a body sent at ts (Unix
// seconds): "t=TS,v1=HEX", HEX being the HMAC-SHA256 of "TS.BODY" keyed
// with the subscription's secret.
func Sign(key []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", ts, hex.EncodeToString(mac.Sum(nil)))
}

// ErrBadSignature reports a signature that does not verify.
var ErrBadSignature = errors.New("webhook signature does not verify")

// Verify checks a signature header against the body and secret, and that
// its time is within tolerance of now (0 skips that check). Receivers
// written in Go can use it; the scheme is documented for others.
func Verify(key []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts int64
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts, _ = strconv.ParseInt(v, 10, 64)
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == 0 || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header %q", ErrBadSignature, header)
	}
	if tolerance > 0 {
		if age := now.Sub(time.Unix(ts, 0)); age > tolerance || age < -tolerance {
			return fmt.Errorf("%w: signed at %d, outside the tolerance", ErrBadSignature, ts)
		}
	}
	want := Sign(key, ts, body)
	_, wantHex, _ := strings.Cut(want, ",v1=")
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(wantHex)) {
			return nil
		}
	}
	return ErrBadSignature
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "…"
	}
	return c.String()
}

func quote(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return ": " + s
}

// SyncTemplate records a template's subscriptions (none removes them).
func SyncTemplate(ctx context.Context, st Store, t *template.Template, now time.Time) error {
	source := "template:" + t.Key()
	subs := make([]*store.Subscription, 0, len(t.Subscriptions))
	for _, s := range t.Subscriptions {
		spec, err := json.Marshal(s)
		if err != nil {
			return err
		}
		subs = append(subs, &store.Subscription{ID: source + "/" + s.Name, Name: s.Name, Namespace: t.Namespace, TaskName: t.Name,
			Version: t.Version, Spec: spec})
	}
	if _, err := st.SubscriptionSync(ctx, &store.SubscriptionSyncParams{Source: source, Subscriptions: subs, Now: now}); err != nil {
		return err
	}
	return nil
}

// SyncServer records a server's subscriptions file: it replaces the
// subscriptions a previous file declared.
func SyncServer(ctx context.Context, st Store, subs []template.Subscription, now time.Time) ([]*store.Subscription, error) {
	out := make([]*store.Subscription, 0, len(subs))
	for _, s := range subs {
		spec, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		out = append(out, &store.Subscription{ID: "server/" + s.Name, Name: s.Name, Namespace: s.Namespace, TaskName: s.TaskName, Spec: spec})
	}
	return st.SubscriptionSync(ctx, &store.SubscriptionSyncParams{Source: "server", Subscriptions: out, Now: now})
}
