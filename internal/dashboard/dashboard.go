// Package dashboard serves the web dashboard: one HTML page, a script and
// a style sheet, embedded in the binary and written by hand (no build
// step, no JavaScript toolchain). The page talks to the REST API of the
// same server with the token its user signs in with, kept in the
// browser's session storage; it loads nothing from any other host, which
// its Content-Security-Policy enforces.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// asset is one embedded file with its validator.
type asset struct {
	body  []byte
	etag  string
	ctype string
}

// Handler serves the dashboard: the page at "/" and its files under
// "/assets/".
type Handler struct {
	assets map[string]*asset
}

// New returns the dashboard handler.
func New() *Handler {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		h.assets[strings.TrimPrefix(p, "static/")] = &asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	if err != nil {
		panic("dashboard: embedded files: " + err.Error()) // the embed is checked at build time
	}
	return h
}

// contentSecurityPolicy allows nothing but this server.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// ServeHTTP serves "/" (the page) and "/assets/NAME".
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := ""
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/index.html":
		name = "index.html"
	case strings.HasPrefix(r.URL.Path, "/assets/"):
		name = strings.TrimPrefix(r.URL.Path, "/assets/")
	}
	a := h.assets[name]
	if a == nil || name == "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache") // revalidate: the ETag makes it cheap
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(a.body)
}
