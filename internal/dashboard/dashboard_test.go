package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesPageAndAssets(t *testing.T) {
	t.Parallel()
	h := New()
	get := func(path string, hdr ...string) *http.Response {
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	for path, ctype := range map[string]string{"/": "text/html", "/assets/app.js": "javascript", "/assets/style.css": "text/css"} {
		resp := get(path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if again := get(path, "If-None-Match", resp.Header.Get("ETag")); again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", path, again.StatusCode)
		}
	}
	for _, path := range []string{"/assets/nope.js", "/assets/", "/index", "/assets/../dashboard.go"} {
		if resp := get(path); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// The page loads nothing from other hosts.
func TestNoExternalResources(t *testing.T) {
	t.Parallel()
	for name, a := range New().assets {
		body := string(a.body)
		for _, bad := range []string{"http://", "https://", "//cdn", "<script>", " style=\"", "innerHTML", "eval("} {
			if bad == "http://" && strings.Contains(body, "http://www.w3.org/2000/svg") {
				body = strings.ReplaceAll(body, "http://www.w3.org/2000/svg", "")
			}
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
