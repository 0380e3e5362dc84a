package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/billtransfer/ledger/services/dashboard"
)

// TestHandler checks what the handler serves: the page, its assets, 404 and
// 405, and the headers that keep the token to the embedded script.
func TestHandler(t *testing.T) {
	t.Parallel()
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, path string, hdr ...string) *http.Response {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	body := func(res *http.Response) string {
		t.Helper()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	page := get(http.MethodGet, "/")
	html := body(page)
	if page.StatusCode != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
	}
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if page.Header.Get("X-Content-Type-Options") != "nosniff" || page.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers: %v", page.Header)
	}
	// No inline script or style: the policy would block them.
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|style=|onclick=|onload=`).MatchString(html) {
		t.Errorf("the page has inline script or style")
	}
	for _, id := range []string{"signin-form", "month", "panel-cost", "panel-drill", "panel-proforma", "panel-invoices", "panel-payments", "panel-tax"} {
		if !strings.Contains(html, `id="`+id+`"`) {
			t.Errorf("the page has no #%s", id)
		}
	}

	// Every asset the page links is served, with its content type.
	links := regexp.MustCompile(`(?:src|href)="(/assets/[^"?]+)\?v=([0-9a-f]+)"`).FindAllStringSubmatch(html, -1)
	if len(links) < 3 {
		t.Fatalf("the page links %d assets: %v", len(links), links)
	}
	types := map[string]string{".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
	for _, l := range links {
		res := get(http.MethodGet, l[1]+"?v="+l[2])
		b := body(res)
		if res.StatusCode != http.StatusOK || b == "" {
			t.Errorf("GET %s: %d, %d bytes", l[1], res.StatusCode, len(b))
			continue
		}
		for ext, ct := range types {
			if strings.HasSuffix(l[1], ext) && !strings.HasPrefix(res.Header.Get("Content-Type"), ct) {
				t.Errorf("GET %s: Content-Type %q, want %s", l[1], res.Header.Get("Content-Type"), ct)
			}
		}
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", l[1])
		} else if again := get(http.MethodGet, l[1], "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", l[1], again.StatusCode)
		}
	}

	for _, c := range []struct {
		name, method, path string
		want               int
	}{
		{"head of the page", http.MethodHead, "/", http.StatusOK},
		{"unknown asset", http.MethodGet, "/assets/nope.js", http.StatusNotFound},
		{"the template itself is not an asset", http.MethodGet, "/assets/index.html", http.StatusNotFound},
		{"unknown path", http.MethodGet, "/nope", http.StatusNotFound},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed},
	} {
		if res := get(c.method, c.path); res.StatusCode != c.want {
			t.Errorf("%s: %s %s = %d, want %d", c.name, c.method, c.path, res.StatusCode, c.want)
		}
	}
}

// TestScriptShowsAmountsAsStrings guards the rule of the page: amounts are
// displayed as the API's strings. Number() appears only where a bar length is
// computed (magnitude), and no amount is parsed with parseFloat.
func TestScriptShowsAmountsAsStrings(t *testing.T) {
	t.Parallel()
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/assets/app.js", nil))
	// The code without its comments (the script's comments are whole lines).
	var code []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "//") {
			code = append(code, line)
		}
	}
	js := strings.Join(code, "\n")
	if strings.Contains(js, "parseFloat") || strings.Contains(js, "toLocaleString") {
		t.Errorf("app.js parses or reformats numbers")
	}
	if n := strings.Count(js, "Number("); n != 1 {
		t.Errorf("app.js calls Number() %d times, want once (in magnitude, for bar lengths)", n)
	}
	if strings.Contains(js, "innerHTML") {
		t.Errorf("app.js uses innerHTML: build elements with textContent so API strings are never parsed as HTML")
	}
}
