// Package netguard keeps outbound HTTP requests of step handlers and
// webhooks away from the server's own network: loopback, private,
// link-local (cloud metadata), multicast and other special addresses are
// refused unless an operator allowlists them.
//
// The check runs when a connection is dialed, on the address DNS returned,
// so a name that resolves (or re-resolves, DNS rebinding) to a private
// address is refused, and so is every redirect hop. Host names written as
// obfuscated numbers (2130706433, 0x7f000001, 017700000001, 127.1) are
// refused before any lookup.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused reports a destination the guard does not allow.
var ErrRefused = errors.New("destination refused")

// Policy decides which destinations are allowed.
type Policy struct {
	// AllowHosts are host names allowed whatever they resolve to, such as
	// "payments.internal" (exact match, case-insensitive).
	AllowHosts []string
	// AllowPrefixes are address ranges allowed although special, such as
	// 10.1.0.0/16 or 127.0.0.1/32.
	AllowPrefixes []netip.Prefix
}

// ParsePolicy reads an allowlist: host names and CIDR prefixes (a bare IP
// means that one address).
func ParsePolicy(entries []string) (*Policy, error) {
	p := &Policy{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			pre, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("allowlist entry %q: %w", e, err)
			}
			p.AllowPrefixes = append(p.AllowPrefixes, pre.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil {
			p.AllowPrefixes = append(p.AllowPrefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p.AllowHosts = append(p.AllowHosts, strings.ToLower(e))
	}
	return p, nil
}

func (p *Policy) hostAllowed(host string) bool {
	if p == nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range p.AllowHosts {
		if h == host {
			return true
		}
	}
	return false
}

func (p *Policy) addrAllowed(ip netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, pre := range p.AllowPrefixes {
		if pre.Contains(ip) {
			return true
		}
	}
	return false
}

// specialPrefixes are refused by default.
func specialPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",         // "this network"
		"10.0.0.0/8",        // private
		"100.64.0.0/10",     // carrier-grade NAT
		"127.0.0.0/8",       // loopback
		"169.254.0.0/16",    // link-local, cloud metadata (169.254.169.254)
		"172.16.0.0/12",     // private
		"192.0.0.0/24",      // IETF protocol assignments
		"192.0.2.0/24",      // documentation
		"192.88.99.0/24",    // 6to4 relay
		"192.168.0.0/16",    // private
		"198.18.0.0/15",     // benchmarking
		"198.51.100.0/24",   // documentation
		"203.0.113.0/24",    // documentation
		"224.0.0.0/4",       // multicast
		"240.0.0.0/4",       // reserved, broadcast
		"::/128",            // unspecified
		"::1/128",           // loopback
		"64:ff9b::/96",      // NAT64 (can reach IPv4 private space)
		"64:ff9b:1::/48",    // local NAT64
		"100::/64",          // discard
		"2001::/23",         // IETF protocol assignments
		"2001:db8::/32",     // documentation
		"2002::/16",         // 6to4 (embeds IPv4)
		"fc00::/7",          // unique local
		"fe80::/10",         // link-local
		"ff00::/8",          // multicast
		"fd00:ec2::254/128", // AWS metadata over IPv6
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// Check reports whether the policy allows connecting to ip.
func (p *Policy) Check(ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if p.addrAllowed(ip) {
		return nil
	}
	for _, pre := range specialPrefixes() {
		if pre.Contains(ip) {
			return fmt.Errorf("%w: %s is in the special range %s (allowlist it to use it)", ErrRefused, ip, pre)
		}
	}
	return nil
}

// CheckURL refuses URLs that are not http or https, and host names written
// as obfuscated numbers, before any lookup. An IP host is checked against
// the policy at once.
func (p *Policy) CheckURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q (only http and https)", ErrRefused, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: the URL has no host", ErrRefused)
	}
	if p.hostAllowed(host) {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.Check(ip)
	}
	if looksNumeric(host) {
		return fmt.Errorf("%w: host %q is an IP address in an unusual notation", ErrRefused, host)
	}
	return nil
}

// looksNumeric reports host names that some resolvers read as IPv4
// addresses: decimal, octal or hex numbers, alone or dotted (127.1).
func looksNumeric(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, part := range strings.Split(host, ".") {
		if part == "" {
			return false
		}
		p := strings.ToLower(part)
		if strings.HasPrefix(p, "0x") {
			p = p[2:]
			if p == "" {
				return true
			}
			for _, c := range p {
				if !strings.ContainsRune("0123456789abcdef", c) {
					return false
				}
			}
			continue
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// Dialer returns a dialer that checks every address it connects to,
// after name resolution.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrRefused, err)
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("%w: cannot read address %q", ErrRefused, host)
			}
			return p.Check(ip)
		},
	}
}

// Client returns an HTTP client whose requests, connections and redirects
// are checked by the policy: every request's URL (the first and each
// redirect) goes through CheckURL, and every connection's address through
// Check once DNS has answered. Allowlisted host names skip the address
// check. timeout bounds each request (0: only the request's context does);
// at most maxRedirects redirects are followed.
func (p *Policy) Client(timeout time.Duration, maxRedirects int) *http.Client {
	guarded := p.Dialer(10 * time.Second)
	plain := &net.Dialer{Timeout: 10 * time.Second}
	transport := &http.Transport{
		Proxy: nil, // never through a proxy: the proxy would connect for us, unchecked
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err == nil && p.hostAllowed(host) {
				return plain.DialContext(ctx, network, addr)
			}
			return guarded.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: &checkedTransport{p: p, next: transport},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// checkedTransport checks each request's URL before it is sent.
type checkedTransport struct {
	p    *Policy
	next http.RoundTripper
}

func (t *checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.p.CheckURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(req)
}
