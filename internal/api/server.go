// Package api is Tasker's REST API: JSON under /v1, errors as
// application/problem+json with stable codes, Server-Sent Events for the
// event log, bearer-token authentication with per-resource permissions,
// limits and rate limiting, health endpoints and the OpenAPI document.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/auth"
)

// Config configures the API. Client is required.
type Config struct {
	Client *tasker.Client
	// Auth authenticates requests; required unless DisableAuth.
	Auth *auth.Authenticator
	// DisableAuth lets every request act as an unconfined admin. For local
	// development only.
	DisableAuth bool
	// Logger receives request logs (JSON recommended). Default: discard.
	Logger *slog.Logger
	// MaxBodyBytes caps request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// RateLimit is the sustained requests per second allowed per token (or
	// per client address for unauthenticated requests). Default 50.
	RateLimit float64
	// RateBurst is the burst allowed above RateLimit. Default 100.
	RateBurst int
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	// Dashboard serves the web dashboard at "/" and "/assets/"; nil
	// answers 404 there. Its files are public: the data comes from the
	// API with the user's token.
	Dashboard http.Handler
	// EventPoll is how often an event stream looks for new events when no
	// in-process signal arrives. Default 500ms.
	EventPoll time.Duration
	// StreamHeartbeat is the interval of keep-alive comments on event
	// streams. Default 15s.
	StreamHeartbeat time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 50
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 100
	}
	if c.EventPoll <= 0 {
		c.EventPoll = 500 * time.Millisecond
	}
	if c.StreamHeartbeat <= 0 {
		c.StreamHeartbeat = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Route is one endpoint of the API.
type Route struct {
	Method  string
	Pattern string
	// Permission is required of the caller; zero for public endpoints.
	Permission auth.Permission
	// Unscoped refuses namespace-confined tokens (global resources).
	Unscoped bool
	handle   handlerFunc
}

// handlerFunc serves one request for an authenticated principal.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// Server serves the API.
type Server struct {
	cfg     Config
	client  *tasker.Client
	log     *slog.Logger
	routes  []Route
	limiter *limiter
	handler http.Handler
	// shutdown is closed when the server stops, ending event streams.
	shutdown chan struct{}
}

// New builds the API.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Client == nil {
		return nil, errors.New("api: a client is required")
	}
	if cfg.Auth == nil && !cfg.DisableAuth {
		return nil, errors.New("api: an authenticator is required unless authentication is disabled")
	}
	s := &Server{cfg: cfg, client: cfg.Client, log: cfg.Logger, limiter: newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.Now),
		shutdown: make(chan struct{})}
	s.routes = s.table()
	mux := http.NewServeMux()
	paths := map[string]bool{}
	for _, rt := range s.routes {
		mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
		paths[rt.Pattern] = true
	}
	methods := map[string][]string{}
	for _, rt := range s.routes {
		methods[rt.Pattern] = append(methods[rt.Pattern], rt.Method)
	}
	for p := range paths {
		allow := strings.Join(methods[p], ", ")
		mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeProblem(w, r, errorf("method_not_allowed", "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		}))
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.Dashboard != nil && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/assets/")) {
			cfg.Dashboard.ServeHTTP(w, r)
			return
		}
		writeProblem(w, r, errorf("not_found", "no endpoint %s %s", r.Method, r.URL.Path))
	}))
	s.handler = s.correlate(s.recoverPanics(s.logRequests(mux)))
	return s, nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes returns every endpoint, sorted by path and method.
func (s *Server) Routes() []Route {
	out := append([]Route(nil), s.routes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Close ends the open event streams; call it when the HTTP server shuts
// down (streams are long requests that Shutdown would otherwise wait for).
func (s *Server) Close() {
	select {
	case <-s.shutdown:
	default:
		close(s.shutdown)
	}
}

func (s *Server) table() []Route {
	return []Route{
		{Method: "GET", Pattern: "/health/live", handle: s.live},
		{Method: "GET", Pattern: "/health/ready", handle: s.ready},
		{Method: "GET", Pattern: "/openapi.json", handle: s.openAPI},
		{Method: "GET", Pattern: "/metrics", Permission: auth.MetricsRead, Unscoped: true, handle: s.metrics},

		{Method: "GET", Pattern: "/v1/templates", Permission: auth.TemplatesRead, handle: s.listTemplates},
		{Method: "PUT", Pattern: "/v1/templates", Permission: auth.TemplatesWrite, handle: s.registerTemplate},
		{Method: "POST", Pattern: "/v1/templates/validate", Permission: auth.TemplatesValidate, handle: s.validateTemplate},
		{Method: "GET", Pattern: "/v1/templates/{namespace}/{name}", Permission: auth.TemplatesRead, handle: s.getTemplate},
		{Method: "GET", Pattern: "/v1/templates/{namespace}/{name}/{version}", Permission: auth.TemplatesRead, handle: s.getTemplate},

		{Method: "POST", Pattern: "/v1/tasks", Permission: auth.TasksCreate, handle: s.createTask},
		{Method: "GET", Pattern: "/v1/tasks", Permission: auth.TasksRead, handle: s.listTasks},
		{Method: "GET", Pattern: "/v1/tasks/{id}", Permission: auth.TasksRead, handle: s.getTask},
		{Method: "POST", Pattern: "/v1/tasks/{id}/cancel", Permission: auth.TasksCancel, handle: s.cancelTask},
		{Method: "POST", Pattern: "/v1/tasks/{id}/retry", Permission: auth.TasksRetry, handle: s.retryTask},
		{Method: "POST", Pattern: "/v1/tasks/{id}/resolve", Permission: auth.TasksResolve, handle: s.resolveTask},
		{Method: "GET", Pattern: "/v1/tasks/{id}/diagram", Permission: auth.TasksRead, handle: s.taskDiagram},
		{Method: "GET", Pattern: "/v1/tasks/{id}/transitions", Permission: auth.TasksRead, handle: s.taskTransitions},

		{Method: "GET", Pattern: "/v1/steps/{id}", Permission: auth.StepsRead, handle: s.getStep},
		{Method: "POST", Pattern: "/v1/steps/{id}/reset", Permission: auth.StepsReset, handle: s.resetStep},
		{Method: "POST", Pattern: "/v1/steps/{id}/resolve", Permission: auth.StepsResolve, handle: s.resolveStep},
		{Method: "POST", Pattern: "/v1/steps/{id}/cancel", Permission: auth.StepsCancel, handle: s.cancelStep},
		{Method: "GET", Pattern: "/v1/steps/{id}/transitions", Permission: auth.StepsRead, handle: s.stepTransitions},

		{Method: "GET", Pattern: "/v1/events", Permission: auth.EventsRead, handle: s.listEvents},
		{Method: "GET", Pattern: "/v1/events/stream", Permission: auth.EventsRead, handle: s.streamEvents},

		{Method: "GET", Pattern: "/v1/analytics", Permission: auth.AnalyticsRead, handle: s.analytics},

		{Method: "GET", Pattern: "/v1/me", Permission: auth.SessionRead, handle: s.me},
		{Method: "GET", Pattern: "/v1/overview", Permission: auth.TasksRead, handle: s.overview},

		{Method: "GET", Pattern: "/v1/webhooks", Permission: auth.WebhooksRead, handle: s.listWebhooks},
		{Method: "GET", Pattern: "/v1/deliveries", Permission: auth.WebhooksRead, handle: s.listDeliveries},
		{Method: "GET", Pattern: "/v1/deliveries/{id}", Permission: auth.WebhooksRead, handle: s.getDelivery},
		{Method: "POST", Pattern: "/v1/deliveries/{id}/retry", Permission: auth.DeliveriesRetry, handle: s.retryDelivery},
	}
}

// wrap authenticates, authorizes, rate-limits and limits one route.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		var p *auth.Principal
		if rt.Permission != (auth.Permission{}) {
			var err error
			p, err = s.authenticate(r)
			if err != nil && !isAuthError(err) {
				// Not a verdict on the token: the check itself failed.
				s.logError(r, err)
				writeProblem(w, r, s.unexpected(r, err))
				return
			}
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
				if wait, ok := s.limiter.allow("addr:" + clientAddr(r)); !ok {
					writeProblem(w, r, &Error{Code: "rate_limited", Detail: "too many unauthenticated requests", RetryAfter: wait})
					return
				}
				writeProblem(w, r, &Error{Code: "unauthenticated", Detail: authDetail(err), Cause: err})
				return
			}
			if wait, ok := s.limiter.allow("principal:" + p.ID); !ok {
				writeProblem(w, r, &Error{Code: "rate_limited", Detail: "slow down: this token has used up its request rate", RetryAfter: wait})
				return
			}
			if !p.Can(rt.Permission) {
				writeProblem(w, r, errorf("forbidden", "role %s may not %s %s", p.Role, rt.Permission.Action, rt.Permission.Resource))
				return
			}
			if rt.Unscoped && p.Namespace != "" {
				writeProblem(w, r, errorf("forbidden", "a token confined to namespace %q may not read %s", p.Namespace, rt.Permission.Resource))
				return
			}
			r = r.WithContext(tasker.WithActor(withPrincipal(r.Context(), p), p.Actor()))
		}
		if err := rt.handle(w, r, p); err != nil {
			s.logError(r, err)
			var e *Error
			if !errors.As(err, &e) {
				err = s.unexpected(r, err)
			}
			writeProblem(w, r, err)
		}
	})
}

func (s *Server) authenticate(r *http.Request) (*auth.Principal, error) {
	if s.cfg.DisableAuth {
		return &auth.Principal{ID: "anonymous", Name: "anonymous (authentication disabled)", Role: auth.RoleAdmin}, nil
	}
	return s.cfg.Auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
}

// isAuthError reports a verdict on the credentials (401), as opposed to a
// failure to check them.
func isAuthError(err error) bool {
	for _, e := range []error{auth.ErrNoCredentials, auth.ErrMalformed, auth.ErrExpired, auth.ErrRevoked, auth.ErrUnknown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// unexpected classifies an error the handlers did not expect: 503 when the
// database does not answer, 500 otherwise.
func (s *Server) unexpected(r *http.Request, err error) *Error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if errors.Is(err, tasker.ErrUnavailable) || s.client.Ping(ctx) != nil {
		return &Error{Code: "unavailable", Detail: "the database cannot be reached; try again", Cause: err}
	}
	return &Error{Code: "internal", Detail: "the server failed; the correlation id identifies the failure in its logs", Cause: err}
}

func authDetail(err error) string {
	switch {
	case errors.Is(err, auth.ErrNoCredentials):
		return "send Authorization: Bearer TOKEN"
	case errors.Is(err, auth.ErrMalformed):
		return "the bearer token is malformed"
	case errors.Is(err, auth.ErrExpired):
		return "the token has expired"
	case errors.Is(err, auth.ErrRevoked):
		return "the token has been revoked"
	case errors.Is(err, auth.ErrUnknown):
		return "the token is not valid"
	}
	return "the token could not be checked"
}

func (s *Server) logError(r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) && codes()[e.Code].Status < 500 {
		s.log.DebugContext(r.Context(), "api: request refused", slog.String("code", e.Code), slog.Any("error", err))
		return
	}
	s.log.ErrorContext(r.Context(), "api: request failed", slog.Any("error", err))
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p *auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func clientAddr(r *http.Request) string {
	addr := r.RemoteAddr
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return addr
}
