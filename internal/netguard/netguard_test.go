package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a local server that counts the connections it accepts.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, conns := countingServer(t, okHandler())
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	// A second server, on IPv6 loopback when the machine has it.
	var v6 *httptest.Server
	var v6conns *atomic.Int64
	if l, err := net.Listen("tcp", "[::1]:0"); err == nil {
		l.Close()
		v6 = httptest.NewUnstartedServer(okHandler())
		v6.Listener.Close()
		v6.Listener, _ = net.Listen("tcp", "[::1]:0")
		var n atomic.Int64
		v6conns = &n
		v6.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				n.Add(1)
			}
		}
		v6.Start()
		t.Cleanup(v6.Close)
	}
	// A server reached by an allowlisted name that redirects to a loopback
	// address that is not allowlisted.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:"+port+"/private", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	_, rport, _ := net.SplitHostPort(strings.TrimPrefix(redirector.URL, "http://"))

	deny := &Policy{}
	refused := []string{
		"http://127.0.0.1:" + port + "/",
		"http://2130706433:" + port + "/",
		"http://0x7f000001:" + port + "/",
		"http://017700000001:" + port + "/",
		"http://127.1:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
		"http://localhost:" + port + "/", // a name that resolves to loopback
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/",
		"http://192.168.1.1/",
		"http://[fd00:ec2::254]/",
		"http://0.0.0.0:" + port + "/",
		"file:///etc/passwd",
		"gopher://127.0.0.1:" + port + "/",
		"ftp://example.com/",
	}
	if v6 != nil {
		refused = append(refused, v6.URL+"/")
	} else {
		refused = append(refused, "http://[::1]:"+port+"/")
	}
	for _, u := range refused {
		c := deny.Client(5*time.Second, 10)
		err := get(ctx, c, u)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", u, err)
		}
	}
	// The redirect hop is checked: the first server is reached (its name is
	// allowlisted), the private target is not.
	viaName := &Policy{AllowHosts: []string{"redirector.test"}}
	c := viaName.Client(5*time.Second, 10)
	c.Transport.(*checkedTransport).next.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		if host == "redirector.test" {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+rport)
		}
		return viaName.Dialer(time.Second).DialContext(ctx, network, addr)
	}
	if err := get(ctx, c, "http://redirector.test:"+rport+"/"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("redirect to loopback: err = %v, want ErrRefused", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the refused destinations were connected to %d times", n)
	}
	if v6conns != nil && v6conns.Load() != 0 {
		t.Errorf("the IPv6 server was connected to %d times", v6conns.Load())
	}

	// Allowlisted, the same destinations work.
	open, err := ParsePolicy([]string{"127.0.0.1", "::1/128", " "})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://127.0.0.1:" + port + "/", "http://[::ffff:127.0.0.1]:" + port + "/", "http://localhost:" + port + "/"} {
		if err := get(ctx, open.Client(5*time.Second, 10), u); err != nil {
			t.Errorf("%s allowlisted: %v", u, err)
		}
	}
	if v6 != nil {
		if err := get(ctx, open.Client(5*time.Second, 10), v6.URL); err != nil {
			t.Errorf("%s allowlisted: %v", v6.URL, err)
		}
	}
	// Obfuscated notations stay refused even when their address is allowed:
	// nobody writes an allowlisted host that way.
	if err := get(ctx, open.Client(5*time.Second, 10), "http://2130706433:"+port+"/"); !errors.Is(err, ErrRefused) {
		t.Errorf("numeric host with an allowlist: %v", err)
	}
	byName, _ := ParsePolicy([]string{"LOCALHOST"})
	if err := get(ctx, byName.Client(5*time.Second, 10), "http://localhost:"+port+"/"); err != nil {
		t.Errorf("allowlisted host name: %v", err)
	}
	if conns.Load() == 0 {
		t.Error("the allowlisted requests did not reach the server")
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	p := &Policy{}
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::"} {
		if err := p.Check(netip.MustParseAddr(s)); !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%s) = %v, want ErrRefused", s, err)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"} {
		if err := p.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
	ten, _ := ParsePolicy([]string{"10.1.0.0/16"})
	if ten.Check(netip.MustParseAddr("10.1.9.9")) != nil || ten.Check(netip.MustParseAddr("10.2.0.1")) == nil {
		t.Error("a prefix allowlist must open exactly its range")
	}
	if _, err := ParsePolicy([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix must be an error")
	}
	for host, numeric := range map[string]bool{"2130706433": true, "0x7f.1": true, "127.1": true, "0": true, "example.com": false,
		"1password.com": false, "0x": true, "a.0x1": false, "10.0.0.1.nip.io": false} {
		if looksNumeric(host) != numeric {
			t.Errorf("looksNumeric(%q) = %v", host, !numeric)
		}
	}
}
